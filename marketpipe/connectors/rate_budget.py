"""One request budget for a whole run, shared by threads *and* processes through SQLite.

Every job of a run, whether Snakemake runs it as a thread or as its own process, books its
send slots in the same small database under ``data_dir``, so the vendor never sees more
than the budget in any window. The adaptive state (budget, pause) is shared the same way.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from marketpipe.connectors.rate_limit import (
    BudgetState,
    adapt_budget,
    earliest_slot,
    padded_window,
)
from marketpipe.foundation.sqlite import connect, transaction

BUDGET_FILE = "rate_budget.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS slots (t REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS slots_t ON slots (t)",
    "CREATE TABLE IF NOT EXISTS budget (id INTEGER PRIMARY KEY CHECK (id = 1), budget INTEGER, "
    "ceiling INTEGER, paused_until REAL, last_change REAL, configured INTEGER)",
)


class SharedRateLimiter:
    """A sliding-window budget whose slots and state live in a SQLite file."""

    def __init__(
        self,
        path: Path | str,
        requests_per_window: int,
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_window < 1:
            raise ValueError(f"requests_per_window must be >= 1, got {requests_per_window}")
        self.path = Path(path)
        self.window_seconds = padded_window(window_seconds)
        self.configured = requests_per_window
        self._clock = clock
        self._lock = threading.Lock()
        # Slots are cheap to lose in a crash (the window moves on), so commits need no fsync.
        self._db = connect(self.path, durable=False, shared_across_threads=True)
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            row = db.execute("SELECT configured FROM budget WHERE id = 1").fetchone()
            if row is None or row[0] != requests_per_window:
                # A new (or re-configured) budget starts fresh; booked slots still count.
                db.execute(
                    "INSERT OR REPLACE INTO budget VALUES (1, ?, ?, 0, 0, ?)",
                    (requests_per_window, requests_per_window, requests_per_window),
                )

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def _state(self, db: sqlite3.Connection) -> BudgetState:
        budget, ceiling, paused, changed = db.execute(
            "SELECT budget, ceiling, paused_until, last_change FROM budget WHERE id = 1"
        ).fetchone()
        return BudgetState(budget, ceiling, paused, changed)

    @property
    def budget(self) -> int:
        """The current shared budget per window."""
        with self._transaction() as db:
            return self._state(db).budget

    def reserve(self) -> float:
        """Book the earliest slot that keeps every window within the shared budget."""
        with self._transaction() as db:
            now = self._clock()
            db.execute("DELETE FROM slots WHERE t <= ?", (now - self.window_seconds,))
            state = self._state(db)
            latest = db.execute("SELECT max(t) FROM slots").fetchone()[0]
            row = db.execute(
                "SELECT t FROM slots ORDER BY t DESC LIMIT 1 OFFSET ?", (state.budget - 1,)
            ).fetchone()
            slot = earliest_slot(now, state, latest, row[0] if row else None, self.window_seconds)
            db.execute("INSERT INTO slots (t) VALUES (?)", (slot,))
        return slot - now

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Adapt the shared budget to the vendor's feedback."""
        with self._transaction() as db:
            state = adapt_budget(
                self._state(db), status, headers, self._clock(), self.window_seconds
            )
            db.execute(
                "UPDATE budget SET budget = ?, ceiling = ?, paused_until = ?, last_change = ? "
                "WHERE id = 1",
                (state.budget, state.ceiling, state.paused_until, state.last_change),
            )

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
