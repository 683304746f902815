"""Which vendor file each partition was split from, and that file's version (its ETag).

A bulk source (Massive's flat files) publishes one file per day for the whole market and
replaces it when it corrects it. ``marketpipe refresh`` compares these versions with the
files' current ones and re-reads only the days whose file changed. A partition fetched from
the REST API has no row here.

Mixed into :class:`~marketpipe.lake.ledger.CheckpointStore`, which owns the connection.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager

from marketpipe.lake.fencing import check_fence


class SourceLedger:
    """Ledger rows of partitions' source files (needs ``_db`` and ``_transaction``)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_sources(
        self, source: str, version: str, partitions: Iterable[tuple[str, dt.date]]
    ) -> None:
        """Record that ``partitions`` (symbol, day) were split from ``source`` at ``version``."""
        check_fence("a ledger commit")
        rows = [(symbol, day.isoformat(), source, version) for symbol, day in partitions]
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO partition_sources (symbol, day, source, version) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )

    def partition_sources(
        self, first: dt.date, last: dt.date
    ) -> dict[tuple[str, dt.date], tuple[str, str]]:
        """The recorded (source, version) of each partition from ``first`` to ``last``."""
        rows = self._db.execute(
            "SELECT symbol, day, source, version FROM partition_sources WHERE day BETWEEN ? AND ?",
            (first.isoformat(), last.isoformat()),
        ).fetchall()
        return {
            (symbol, dt.date.fromisoformat(day)): (source, version)
            for symbol, day, source, version in rows
        }
