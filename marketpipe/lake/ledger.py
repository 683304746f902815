"""SQLite checkpoints: a ledger row per published partition and per-stream high-water marks.

The store lives under ``data_dir`` in WAL mode, so several jobs (threads or processes)
can write to it at once. A partition counts as done only when its file exists and its
ledger row agrees; :meth:`CheckpointStore.reconcile` enforces that at job start.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from marketpipe.chaos import crash_point
from marketpipe.foundation.sqlite import connect, transaction
from marketpipe.lake.fencing import check_fence
from marketpipe.lake.ledger_datasets import DataSetLedger
from marketpipe.lake.ledger_months import MonthEntry, MonthLedger
from marketpipe.lake.ledger_rows import (
    LEDGER_COLUMNS,
    ActionsEntry,
    LedgerEntry,
    Replacement,
    StreamKey,
    create_tables,
    ledger_entry,
    replacement_from_row,
)
from marketpipe.lake.ledger_sources import SourceLedger
from marketpipe.lake.ledger_ticks import TickEntry, TickLedger
from marketpipe.markettime import clock
from marketpipe.observability.summary import JobRecord

__all__ = [
    "STATE_DIR",
    "ActionsEntry",
    "CheckpointStore",
    "LakeSettingsMismatch",
    "LedgerEntry",
    "MonthEntry",
    "Replacement",
    "StreamKey",
    "TickEntry",
    "state_path",
]

STATE_DIR = "_state"
STATE_FILE = "checkpoints.sqlite"


def state_path(data_dir: Path | str) -> Path:
    """Where the checkpoint database of a lake lives."""
    return Path(data_dir) / STATE_DIR / STATE_FILE


class LakeSettingsMismatch(ValueError):
    """The lake under ``data_dir`` was filled with different settings."""


class CheckpointStore(DataSetLedger, MonthLedger, SourceLedger, TickLedger):
    """Checkpoints of one lake; open one per job and close it when done."""

    def __init__(self, data_dir: Path | str) -> None:
        self._db = connect(state_path(data_dir))
        with self._transaction() as db:
            create_tables(db)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    def claim_settings(self, settings: dict[str, str]) -> None:
        """Record the lake's settings on first use; refuse to mix different ones later."""
        with self._transaction() as db:
            stored = dict(db.execute("SELECT name, value FROM lake_settings").fetchall())
            conflicts = {
                name: (stored[name], value)
                for name, value in settings.items()
                if name in stored and stored[name] != value
            }
            if conflicts:
                details = ", ".join(
                    f"{name} is {old!r} there but {new!r} now"
                    for name, (old, new) in sorted(conflicts.items())
                )
                raise LakeSettingsMismatch(
                    f"the lake in this data_dir was built with other settings ({details}); "
                    "use a separate data_dir for each timeframe/feed/adjustment"
                )
            db.executemany(
                "INSERT OR IGNORE INTO lake_settings (name, value) VALUES (?, ?)",
                sorted(settings.items()),
            )

    def ledger(
        self, symbol: str, days: Iterable[dt.date] | None = None
    ) -> dict[dt.date, LedgerEntry]:
        """Ledger rows of ``symbol`` (optionally only for ``days``), by day."""
        rows = self._db.execute(
            f"SELECT {LEDGER_COLUMNS} FROM partitions WHERE symbol = ?", (symbol,)
        ).fetchall()
        wanted = set(days) if days is not None else None
        entries = {}
        for row in rows:
            entry = ledger_entry(row)
            if wanted is None or entry.day in wanted:
                entries[entry.day] = entry
        return entries

    def all_entries(self) -> list[LedgerEntry]:
        """Every ledger row, ordered by symbol and day."""
        rows = self._db.execute(
            f"SELECT {LEDGER_COLUMNS} FROM partitions ORDER BY symbol, day"
        ).fetchall()
        return [ledger_entry(row) for row in rows]

    def forget(self, symbol: str, days: Iterable[dt.date]) -> None:
        """Drop ledger rows (their files are gone or will be rewritten)."""
        check_fence("a ledger commit")
        keys = [(symbol, day.isoformat()) for day in days]
        with self._transaction() as db:
            db.executemany("DELETE FROM partitions WHERE symbol = ? AND day = ?", keys)
            db.executemany("DELETE FROM file_stats WHERE symbol = ? AND day = ?", keys)
            db.executemany("DELETE FROM partition_sources WHERE symbol = ? AND day = ?", keys)

    def record_file_stats(self, stats: Iterable[tuple[str, dt.date, int, int]]) -> None:
        """Remember (symbol, day, size, mtime_ns) of local partition files as written, so a
        later run notices a file changed on disk with one ``stat`` (see ``lake.integrity``)."""
        rows = [(symbol, day.isoformat(), size, mtime) for symbol, day, size, mtime in stats]
        if rows:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO file_stats VALUES (?, ?, ?, ?)", rows)

    def record_file_stamps(self, stamps: Iterable[tuple[str, int, int]]) -> None:
        """Remember (key, size, mtime_ns) of other local lake files (month, news and
        corporate-actions files) as last seen matching the ledger."""
        rows = list(stamps)
        if rows:
            with self._transaction() as db:
                db.executemany("INSERT OR REPLACE INTO lake_file_stats VALUES (?, ?, ?)", rows)

    def file_stamps(self) -> dict[str, tuple[int, int]]:
        """Every remembered (size, mtime_ns) of :meth:`record_file_stamps`, by key."""
        rows = self._db.execute("SELECT key, size, mtime_ns FROM lake_file_stats").fetchall()
        return {key: (size, mtime) for key, size, mtime in rows}

    def file_stats(self) -> dict[tuple[str, dt.date], tuple[int, int]]:
        """Every remembered (size, mtime_ns), by (symbol, day)."""
        rows = self._db.execute("SELECT symbol, day, size, mtime_ns FROM file_stats").fetchall()
        return {(s, dt.date.fromisoformat(d)): (size, mtime) for s, d, size, mtime in rows}

    def publish(
        self,
        entry: LedgerEntry,
        stream: StreamKey | None = None,
        last_bar: dt.datetime | None = None,
    ) -> None:
        """Record a published partition and advance the stream's high-water mark."""
        self.publish_many([(entry, stream, last_bar)])

    def publish_many(
        self, records: Sequence[tuple[LedgerEntry, StreamKey | None, dt.datetime | None]]
    ) -> None:
        """Record several published partitions in one transaction (see :meth:`publish`)."""
        check_fence("a ledger commit")
        if not records:
            return
        now = clock.now_timestamp()  # the one clock: tests pin it like every other "now"
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO partitions ({LEDGER_COLUMNS}, published_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        entry.symbol,
                        entry.day.isoformat(),
                        entry.rows,
                        entry.sha256,
                        int(entry.known_empty),
                        entry.rejected_rows,
                        entry.requests,
                        entry.flagged_rows,
                        now,
                    )
                    for entry, _, _ in records
                ],
            )
            db.executemany(
                "INSERT INTO high_water (symbol, timeframe, feed, adjustment, last_bar_time) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol, timeframe, feed, adjustment) "
                "DO UPDATE SET last_bar_time = max(last_bar_time, excluded.last_bar_time)",
                [
                    (
                        stream.symbol,
                        stream.timeframe,
                        stream.feed,
                        stream.adjustment,
                        last_bar.astimezone(dt.UTC).isoformat(),
                    )
                    for _, stream, last_bar in records
                    if stream is not None and last_bar is not None
                ],
            )
            crash_point("checkpoint_commit")

    def published_within(self, days: int) -> list[tuple[str, dt.date, dt.datetime]]:
        """Partitions published less than ``days`` after their day began (UTC midnight), with
        when: the only ones that can have been written before their session was final."""
        rows = self._db.execute(
            "SELECT symbol, day, published_at FROM partitions "
            "WHERE published_at < CAST(strftime('%s', day) AS REAL) + ?",
            (days * 86_400,),
        ).fetchall()
        return [
            (symbol, dt.date.fromisoformat(day), dt.datetime.fromtimestamp(at, dt.UTC))
            for symbol, day, at in rows
        ]

    def replace(self, old: LedgerEntry | None, new: LedgerEntry, reason: str, run_id: str) -> None:
        """Record a refreshed partition and its history row in one transaction.

        ``old`` is what the ledger said before (``None``: the file had no row); the file at
        the final path already holds ``new``'s bytes.
        """
        check_fence("a ledger commit")
        now = clock.now_timestamp()  # the one clock: tests pin it like every other "now"
        with self._transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO partitions ({LEDGER_COLUMNS}, published_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.symbol,
                    new.day.isoformat(),
                    new.rows,
                    new.sha256,
                    int(new.known_empty),
                    new.rejected_rows,
                    new.requests,
                    new.flagged_rows,
                    now,
                ),
            )
            db.execute(
                "INSERT INTO partition_history (symbol, day, old_sha256, new_sha256, old_rows, "
                "new_rows, replaced_at, reason, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new.symbol,
                    new.day.isoformat(),
                    old.sha256 if old else "",
                    new.sha256,
                    old.rows if old else 0,
                    new.rows,
                    now,
                    reason,
                    run_id,
                ),
            )

    def replacements(self, symbol: str | None = None) -> list[Replacement]:
        """Every refresh that replaced a partition (of ``symbol``), oldest first."""
        query = (
            "SELECT symbol, day, old_sha256, new_sha256, old_rows, new_rows, replaced_at, "
            "reason, run_id FROM partition_history"
        )
        rows = self._db.execute(
            query + (" WHERE symbol = ?" if symbol else "") + " ORDER BY rowid",
            (symbol,) if symbol else (),
        ).fetchall()
        return [replacement_from_row(row) for row in rows]

    def open_job(self, job: str, symbols: Iterable[str], days: Iterable[dt.date]) -> None:
        """Note that ``job`` may publish partitions of ``symbols`` x ``days`` from now on."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO open_jobs (job, symbols, days) VALUES (?, ?, ?)",
                (job, json.dumps(list(symbols)), json.dumps([day.isoformat() for day in days])),
            )

    def close_job(self, job: str) -> None:
        """``job`` ended (either way) with its ledger rows and files in agreement."""
        with self._transaction() as db:
            db.execute("DELETE FROM open_jobs WHERE job = ?", (job,))

    def open_jobs(self) -> dict[str, tuple[list[str], list[dt.date]]]:
        """Jobs that never closed (the process died): their symbols and days, by job."""
        rows = self._db.execute("SELECT job, symbols, days FROM open_jobs ORDER BY job").fetchall()
        return {
            job: (json.loads(symbols), [dt.date.fromisoformat(day) for day in json.loads(days)])
            for job, symbols, days in rows
        }

    def last_bar_time(self, stream: StreamKey) -> dt.datetime | None:
        """The latest bar published for a stream, if any."""
        row = self._db.execute(
            "SELECT last_bar_time FROM high_water WHERE symbol = ? AND timeframe = ? "
            "AND feed = ? AND adjustment = ?",
            (stream.symbol, stream.timeframe, stream.feed, stream.adjustment),
        ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row else None

    def record_job(self, record: JobRecord) -> None:
        """Store what one job did (and its metrics) under its run id."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO job_runs (run_id, job, symbol, status, error, planned, "
                "missing, published, rows, rejected_rows, requests, started_at, finished_at, "
                "metrics, flagged_rows, permanent) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    record.job,
                    record.symbol,
                    record.status,
                    record.error,
                    record.planned,
                    record.missing,
                    record.published,
                    record.rows,
                    record.rejected_rows,
                    record.requests,
                    record.started_at,
                    record.finished_at,
                    json.dumps(record.metrics, sort_keys=True),
                    record.flagged_rows,
                    int(record.permanent),
                ),
            )

    def job_records(self, run_id: str) -> list[JobRecord]:
        """Every job recorded for ``run_id``, in job order."""
        rows = self._db.execute(
            "SELECT run_id, job, symbol, status, error, planned, missing, published, rows, "
            "rejected_rows, requests, started_at, finished_at, metrics, flagged_rows, permanent "
            "FROM job_runs WHERE run_id = ? ORDER BY job",
            (run_id,),
        ).fetchall()
        return [
            JobRecord(
                *row[:-3],
                metrics=json.loads(row[-3]),
                flagged_rows=row[-2],
                permanent=bool(row[-1]),
            )
            for row in rows
        ]

    def symbol_contents(self) -> list[tuple[str, str, str, int, int, int, int]]:
        """Per symbol the ledger knows: first and last day, partitions, known-empty ones,
        bars, and bytes on disk (0 where not recorded: an S3 lake's)."""
        return self._db.execute(
            "SELECT p.symbol, MIN(p.day), MAX(p.day), COUNT(*), SUM(p.known_empty), "
            "SUM(p.rows), COALESCE(SUM(f.size), 0) FROM partitions p LEFT JOIN file_stats f "
            "ON f.symbol = p.symbol AND f.day = p.day GROUP BY p.symbol ORDER BY p.symbol"
        ).fetchall()

    def count_partitions(self, symbols: Iterable[str], first: dt.date, last: dt.date) -> int:
        """How many ledger rows exist for ``symbols`` between two days (inclusive)."""
        symbols = list(symbols)
        marks = ",".join("?" * len(symbols))
        row = self._db.execute(
            f"SELECT count(*) FROM partitions WHERE symbol IN ({marks}) AND day BETWEEN ? AND ?",
            (*symbols, first.isoformat(), last.isoformat()),
        ).fetchone()
        return int(row[0])

    def high_water_marks(self) -> dict[str, dt.datetime]:
        """The latest published bar per symbol (over all streams)."""
        rows = self._db.execute(
            "SELECT symbol, max(last_bar_time) FROM high_water GROUP BY symbol"
        ).fetchall()
        return {symbol: dt.datetime.fromisoformat(stamp) for symbol, stamp in rows}

    def integrity_check(self) -> str:
        """SQLite's own ``PRAGMA integrity_check`` verdict (``ok`` when healthy)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])
