"""The ledger's tables (created and migrated in place) and the records read from them."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lake_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS partitions (
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    known_empty INTEGER NOT NULL,
    rejected_rows INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    published_at REAL NOT NULL,
    flagged_rows INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, day)
);
CREATE TABLE IF NOT EXISTS partition_sources (
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    source TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (symbol, day)
);
CREATE TABLE IF NOT EXISTS file_stats (
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    PRIMARY KEY (symbol, day)
);
CREATE TABLE IF NOT EXISTS job_runs (
    run_id TEXT NOT NULL,
    job TEXT NOT NULL,
    symbol TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    planned INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    published INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    rejected_rows INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    metrics TEXT NOT NULL,
    flagged_rows INTEGER NOT NULL DEFAULT 0,
    permanent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, job)
);
CREATE TABLE IF NOT EXISTS open_jobs (
    job TEXT PRIMARY KEY,
    symbols TEXT NOT NULL,
    days TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS partition_history (
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    old_sha256 TEXT NOT NULL,
    new_sha256 TEXT NOT NULL,
    old_rows INTEGER NOT NULL,
    new_rows INTEGER NOT NULL,
    replaced_at REAL NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS corporate_action_files (
    symbol TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    covered_from TEXT NOT NULL,
    covered_through TEXT NOT NULL,
    checked_at REAL NOT NULL,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS news_files (
    day TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    rejected INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS news_history (
    day TEXT NOT NULL,
    old_sha256 TEXT NOT NULL,
    new_sha256 TEXT NOT NULL,
    old_rows INTEGER NOT NULL,
    new_rows INTEGER NOT NULL,
    changed_articles INTEGER NOT NULL,
    replaced_at REAL NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS month_files (
    symbol TEXT NOT NULL,
    month TEXT NOT NULL,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    sources_sha256 TEXT NOT NULL,
    built_at REAL NOT NULL,
    PRIMARY KEY (symbol, month)
);
CREATE TABLE IF NOT EXISTS lake_file_stats (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tick_files (
    kind TEXT NOT NULL,
    symbol TEXT NOT NULL,
    day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    stored_at REAL NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (kind, symbol, day)
);
CREATE TABLE IF NOT EXISTS high_water (
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    feed TEXT NOT NULL,
    adjustment TEXT NOT NULL,
    last_bar_time TEXT NOT NULL,
    PRIMARY KEY (symbol, timeframe, feed, adjustment)
);
"""
# Columns added after the first release, for stores created before them: (table, column, type).
_ADDED_COLUMNS = (
    ("partitions", "flagged_rows", "INTEGER NOT NULL DEFAULT 0"),
    ("job_runs", "flagged_rows", "INTEGER NOT NULL DEFAULT 0"),
    # 1 when a person must act before a rerun can succeed (see connectors.errors.is_permanent).
    ("job_runs", "permanent", "INTEGER NOT NULL DEFAULT 0"),
    # The symbols whose news a day's file is complete for ('': none known, fetched again).
    ("news_files", "symbols", "TEXT NOT NULL DEFAULT ''"),
)
LEDGER_COLUMNS = "symbol, day, rows, sha256, known_empty, rejected_rows, requests, flagged_rows"


def create_tables(db: sqlite3.Connection) -> None:
    """Create missing tables, and add columns newer releases need to older stores."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@dataclass(frozen=True)
class LedgerEntry:
    """What was published for one symbol and day."""

    symbol: str
    day: dt.date
    rows: int
    sha256: str
    known_empty: bool
    rejected_rows: int
    requests: int
    flagged_rows: int = 0  # kept rows with open or close outside [low, high]


@dataclass(frozen=True)
class ActionsEntry:
    """A symbol's stored corporate actions: the file's rows and hash, and the range of
    ``process_date`` the vendor has been asked about."""

    symbol: str
    rows: int
    sha256: str
    covered_from: dt.date
    covered_through: dt.date
    checked_at: float = 0.0
    run_id: str = ""


@dataclass(frozen=True)
class NewsEntry:
    """One New York day's stored news: the file's articles and hash, records refused."""

    day: dt.date
    rows: int
    sha256: str
    rejected: int = 0
    run_id: str = ""
    symbols: tuple[str, ...] = ()  # whose news the file is complete for

    def covers(self, symbols: Iterable[str]) -> bool:
        """Whether the file holds the day's news of every one of ``symbols``."""
        return set(symbols) <= set(self.symbols)


@dataclass(frozen=True)
class NewsChange:
    """A stored news day replaced by a later version: both files, how many articles, why."""

    day: dt.date
    old_sha256: str
    new_sha256: str
    old_rows: int
    new_rows: int
    changed_articles: int
    replaced_at: dt.datetime
    reason: str
    run_id: str


@dataclass(frozen=True)
class StreamKey:
    """One request stream's identity: a symbol at a timeframe, feed and adjustment."""

    symbol: str
    timeframe: str
    feed: str
    adjustment: str


def ledger_entry(row: tuple[Any, ...]) -> LedgerEntry:
    """A ``partitions`` row (:data:`LEDGER_COLUMNS`) as an entry."""
    symbol, day, rows, sha256, known_empty, rejected, requests, flagged = row
    return LedgerEntry(
        symbol,
        dt.date.fromisoformat(day),
        rows,
        sha256,
        bool(known_empty),
        rejected,
        requests,
        flagged,
    )


@dataclass(frozen=True)
class Replacement:
    """One published partition replaced by a refresh: both versions, when and why."""

    symbol: str
    day: dt.date
    old_sha256: str
    new_sha256: str
    old_rows: int
    new_rows: int
    replaced_at: dt.datetime
    reason: str
    run_id: str


def replacement_from_row(row: tuple[Any, ...]) -> Replacement:
    """A ``replacements`` row as a :class:`Replacement`."""
    symbol, day, old, new, old_rows, new_rows, replaced_at, reason, run_id = row
    return Replacement(
        symbol,
        dt.date.fromisoformat(day),
        old,
        new,
        old_rows,
        new_rows,
        dt.datetime.fromtimestamp(replaced_at, dt.UTC),
        reason,
        run_id,
    )


def split_symbols(text: str) -> tuple[str, ...]:
    """``"AAPL,MSFT"`` as ``("AAPL", "MSFT")`` (``""``: none)."""
    return tuple(symbol for symbol in text.split(",") if symbol)
