"""The ledger of the data sets kept beside the bars: corporate-action files and news days.

Mixed into :class:`~marketpipe.lake.ledger.CheckpointStore`, which owns the connection.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager

from marketpipe.lake.fencing import check_fence
from marketpipe.lake.ledger_rows import ActionsEntry, NewsChange, NewsEntry, split_symbols
from marketpipe.markettime import clock


class DataSetLedger:
    """Ledger rows of the side data sets (needs ``_db`` and ``_transaction`` of the store)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def record_actions(self, entries: Iterable[ActionsEntry]) -> None:
        """Record the corporate-action files just published (their files already hold them)."""
        check_fence("a ledger commit")
        now = clock.now_timestamp()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO corporate_action_files (symbol, rows, sha256, "
                "covered_from, covered_through, checked_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        entry.symbol,
                        entry.rows,
                        entry.sha256,
                        entry.covered_from.isoformat(),
                        entry.covered_through.isoformat(),
                        now,
                        entry.run_id,
                    )
                    for entry in entries
                ],
            )

    def actions_entries(self) -> dict[str, ActionsEntry]:
        """Every recorded corporate-action file, by symbol."""
        rows = self._db.execute(
            "SELECT symbol, rows, sha256, covered_from, covered_through, checked_at, run_id "
            "FROM corporate_action_files ORDER BY symbol"
        ).fetchall()
        return {
            symbol: ActionsEntry(
                symbol,
                count,
                sha,
                dt.date.fromisoformat(first),
                dt.date.fromisoformat(last),
                checked_at,
                run_id,
            )
            for symbol, count, sha, first, last, checked_at, run_id in rows
        }

    def record_news(
        self,
        entry: NewsEntry,
        replaced: NewsEntry | None = None,
        changed: int = 0,
        reason: str = "",
    ) -> None:
        """Record a news day just written; a replaced version goes to the history with why."""
        check_fence("a ledger commit")
        now = clock.now_timestamp()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO news_files "
                "(day, rows, sha256, rejected, stored_at, run_id, symbols) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.day.isoformat(),
                    entry.rows,
                    entry.sha256,
                    entry.rejected,
                    now,
                    entry.run_id,
                    ",".join(sorted(entry.symbols)),
                ),
            )
            if replaced is not None:
                db.execute(
                    "INSERT INTO news_history (day, old_sha256, new_sha256, old_rows, new_rows, "
                    "changed_articles, replaced_at, reason, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.day.isoformat(),
                        replaced.sha256,
                        entry.sha256,
                        replaced.rows,
                        entry.rows,
                        changed,
                        now,
                        reason,
                        entry.run_id,
                    ),
                )

    def forget_actions(self, symbols: Iterable[str]) -> None:
        """Drop the rows of corporate-action files that were removed (the next run's
        corporate-actions check fetches those symbols again)."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM corporate_action_files WHERE symbol = ?", [(s,) for s in symbols]
            )

    def forget_news(self, days: Iterable[dt.date]) -> None:
        """Drop the rows of news days whose files are gone (the next run fetches them)."""
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM news_files WHERE day = ?", [(day.isoformat(),) for day in days]
            )

    def news_entry(self, day: dt.date) -> NewsEntry | None:
        """The stored news day ``day``, if recorded."""
        row = self._db.execute(
            "SELECT day, rows, sha256, rejected, run_id, symbols FROM news_files WHERE day = ?",
            (day.isoformat(),),
        ).fetchone()
        if row is None:
            return None
        _, count, sha, rejected, run, symbols = row
        return NewsEntry(day, count, sha, rejected, run, split_symbols(symbols))

    def news_entries(self) -> dict[dt.date, NewsEntry]:
        """Every stored news day, by day."""
        rows = self._db.execute(
            "SELECT day, rows, sha256, rejected, run_id, symbols FROM news_files ORDER BY day"
        ).fetchall()
        return {
            dt.date.fromisoformat(day): NewsEntry(
                dt.date.fromisoformat(day), count, sha, rejected, run, split_symbols(symbols)
            )
            for day, count, sha, rejected, run, symbols in rows
        }

    def news_history(self) -> list[NewsChange]:
        """Every replaced news day, oldest first."""
        rows = self._db.execute(
            "SELECT day, old_sha256, new_sha256, old_rows, new_rows, changed_articles, "
            "replaced_at, reason, run_id FROM news_history ORDER BY replaced_at, day"
        ).fetchall()
        return [
            NewsChange(
                dt.date.fromisoformat(day),
                old,
                new,
                old_rows,
                new_rows,
                changed,
                dt.datetime.fromtimestamp(at, dt.UTC),
                reason,
                run,
            )
            for day, old, new, old_rows, new_rows, changed, at, reason, run in rows
        ]
