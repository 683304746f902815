"""The ledger of trades and quotes: one row per stored symbol-day file of each kind.

Mixed into :class:`~marketpipe.lake.ledger.CheckpointStore`, which owns the connection.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from marketpipe.lake.fencing import check_fence
from marketpipe.markettime import clock


@dataclass(frozen=True)
class TickEntry:
    """One stored trades or quotes day: its rows and the sha256 of its bytes."""

    kind: str  # "trades" or "quotes"
    symbol: str
    day: dt.date
    rows: int
    sha256: str
    run_id: str = ""


class TickLedger:
    """Ledger rows of tick day files (needs ``_db`` and ``_transaction`` of the store)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_ticks(self, entry: TickEntry) -> None:
        """Record a tick day file just published (its file already holds it)."""
        check_fence("a ledger commit")
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO tick_files "
                "(kind, symbol, day, rows, sha256, stored_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.kind,
                    entry.symbol,
                    entry.day.isoformat(),
                    entry.rows,
                    entry.sha256,
                    clock.now_timestamp(),
                    entry.run_id,
                ),
            )

    def tick_entries(
        self, kind: str | None = None, symbol: str | None = None
    ) -> dict[tuple[str, str, dt.date], TickEntry]:
        """Every recorded tick day (of ``kind`` and ``symbol`` when given), by (kind,
        symbol, day)."""
        rows = self._db.execute(
            "SELECT kind, symbol, day, rows, sha256, run_id FROM tick_files "
            "WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR symbol = ?) "
            "ORDER BY kind, symbol, day",
            (kind, kind, symbol, symbol),
        ).fetchall()
        entries = {}
        for kind_, symbol_, day, count, sha, run in rows:
            entry = TickEntry(kind_, symbol_, dt.date.fromisoformat(day), count, sha, run)
            entries[(kind_, symbol_, entry.day)] = entry
        return entries

    def forget_ticks(self, kind: str, symbol: str, days: Iterable[dt.date]) -> None:
        """Drop the rows of tick days whose files are gone (the next run fetches them)."""
        check_fence("a ledger commit")
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM tick_files WHERE kind = ? AND symbol = ? AND day = ?",
                [(kind, symbol, day.isoformat()) for day in days],
            )
