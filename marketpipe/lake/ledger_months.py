"""The ledger of the consolidated read layer: one row per symbol-month file, with the digest
of the day files it was built from.

Mixed into :class:`~marketpipe.lake.ledger.CheckpointStore`, which owns the connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from marketpipe.lake.fencing import check_fence
from marketpipe.markettime import clock

Month = tuple[int, int]  # (year, month)


@dataclass(frozen=True)
class MonthEntry:
    """A consolidated symbol-month file: rows, the sha256 of its bytes and of its sources."""

    symbol: str
    month: Month
    rows: int
    sha256: str
    sources_sha256: str  # see marketpipe.lake.consolidated.sources_digest


def _label(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


class MonthLedger:
    """Ledger rows of month files (needs ``_db`` and ``_transaction`` of the store)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_month(self, entry: MonthEntry) -> None:
        """Record a month file just published (its bytes are already durable)."""
        check_fence("a ledger commit")
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO month_files "
                "(symbol, month, rows, sha256, sources_sha256, built_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.symbol,
                    _label(entry.month),
                    entry.rows,
                    entry.sha256,
                    entry.sources_sha256,
                    clock.now_timestamp(),
                ),
            )

    def forget_months(self, symbol: str, months: Iterable[Month]) -> None:
        """Drop the rows of month files that were removed."""
        check_fence("a ledger commit")
        rows = [(symbol, _label(month)) for month in months]
        with self._transaction() as db:
            db.executemany("DELETE FROM month_files WHERE symbol = ? AND month = ?", rows)

    def month_entries(self, symbol: str | None = None) -> dict[tuple[str, Month], MonthEntry]:
        """Every recorded month file (of ``symbol``, if given), by (symbol, month)."""
        query = "SELECT symbol, month, rows, sha256, sources_sha256 FROM month_files"
        rows = (
            self._db.execute(f"{query} WHERE symbol = ?", (symbol,))
            if symbol is not None
            else self._db.execute(query)
        ).fetchall()
        entries = {}
        for name, label, count, sha, sources in rows:
            month = (int(label[:4]), int(label[5:7]))
            entries[(name, month)] = MonthEntry(name, month, count, sha, sources)
        return entries
