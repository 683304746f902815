"""The consolidated read layer: one file per closed symbol-month, derived from its day files.

A year of one symbol is 252 day files, and opening a file costs more than reading its rows;
so once every session of a symbol-month is in the lake, its rows are also written as one
file, ``ohlcv_monthly/symbol=S/year=YYYY/month=MM/bars.parquet`` (same columns, sorted,
page checksums), and reads use it (as Nautilus' ``consolidate_catalog`` and kdb+'s
partitions do). The day files stay the source of truth, the Snakemake targets and the unit
of repair; a month file is only ever a copy of them:

- its footer names the day files it was built from (day, sha256, size) and the ledger
  records it with the digest of their hashes;
- whatever replaces or removes a day file first removes the month file over it
  (:func:`invalidate_months`), and a read uses a month file only while every one of its
  day files is present at its recorded size (:func:`usable_month_keys`), so a read never
  serves a month that no longer matches;
- :func:`consolidate` builds missing months, rebuilds stale ones and removes those whose
  days are no longer all there.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.lake.ledger import CheckpointStore, LedgerEntry, MonthEntry
from marketpipe.lake.ledger_months import Month
from marketpipe.lake.objects import LakeStore, LocalStore, lake_filesystem
from marketpipe.lake.storage import (
    DAY_KEY,
    LAKE_SCHEMA,
    PARTITION_FILE,
    DamagedFileError,
    WrittenFile,
    partition_key,
    publish_table,
    read_verified,
)
from marketpipe.markettime.calendar import trading_sessions

logger = logging.getLogger(__name__)

MONTHLY_DIR = "ohlcv_monthly"
SOURCES_KEY = "marketpipe.sources"  # footer: the day files a month file was built from
MONTH_KEY = "marketpipe.month"
BUILD_THREADS = 4  # month files built at once by consolidate()


def month_of(day: dt.date) -> Month:
    """The (year, month) of ``day``."""
    return day.year, day.month


def month_key(symbol: str, month: Month) -> str:
    """The key, relative to the lake's root, of one symbol-month's consolidated file."""
    year, number = month
    return f"{MONTHLY_DIR}/symbol={symbol}/year={year:04d}/month={number:02d}/{PARTITION_FILE}"


@functools.cache
def month_sessions(month: Month) -> tuple[dt.date, ...]:
    """Every NYSE session of ``month`` (a full scan asks about thousands of months)."""
    first = dt.date(month[0], month[1], 1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return tuple(session.date for session in trading_sessions(first, last))


@dataclass(frozen=True)
class MonthSource:
    """One day file a month file was built from."""

    day: dt.date
    sha256: str
    size: int


def sources_digest(hashes: Mapping[dt.date, str]) -> str:
    """The sha256 of a month's day files' hashes, in day order (what the ledger compares)."""
    text = "".join(f"{day.isoformat()} {sha}\n" for day, sha in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _encode_sources(sources: Sequence[MonthSource]) -> str:
    return json.dumps([[s.day.isoformat(), s.sha256, s.size] for s in sources])


def decode_sources(metadata: Mapping[bytes, bytes] | None) -> list[MonthSource] | None:
    """The sources a month file's footer names, or ``None`` if it names none."""
    raw = (metadata or {}).get(SOURCES_KEY.encode())
    if raw is None:
        return None
    try:
        return [MonthSource(dt.date.fromisoformat(d), s, int(n)) for d, s, n in json.loads(raw)]
    except (ValueError, TypeError):
        return None


class SourceMismatch(ValueError):
    """A day file is missing, damaged or differs from its ledger row: no month is built."""


def build_month(
    lake: LakeStore, symbol: str, month: Month, expected: Mapping[dt.date, str]
) -> WrittenFile:
    """Write the month file of ``symbol`` from its day files, each checked against the
    sha256 the ledger recorded for it (``expected``, every session of the month)."""
    tables, sources, metadata = [], [], {}
    for day in sorted(expected):
        key = partition_key(symbol, day)
        try:
            data = lake.get(key)
        except FileNotFoundError:
            raise SourceMismatch(f"{symbol} {day}: the day file is missing") from None
        sha = hashlib.sha256(data).hexdigest()
        if sha != expected[day]:
            raise SourceMismatch(f"{symbol} {day}: the day file differs from the ledger")
        try:
            table = read_verified(pa.BufferReader(data), f"{lake.uri}/{key}")
        except DamagedFileError as error:
            raise SourceMismatch(str(error)) from None
        if not metadata:
            metadata = {
                k.decode(): v.decode()
                for k, v in (table.schema.metadata or {}).items()
                if k.startswith(b"marketpipe.") and k != DAY_KEY.encode()
            }
        tables.append(table.replace_schema_metadata(None).cast(LAKE_SCHEMA))
        sources.append(MonthSource(day, sha, len(data)))
    metadata[MONTH_KEY] = f"{month[0]:04d}-{month[1]:02d}"
    metadata[SOURCES_KEY] = _encode_sources(sources)
    table = pa.concat_tables(tables) if tables else LAKE_SCHEMA.empty_table()
    return publish_table(lake, month_key(symbol, month), table, metadata)


def invalidate_months(
    lake: LakeStore, store: CheckpointStore, symbol: str, days: Iterable[dt.date]
) -> None:
    """Remove the month files over ``days`` (and their ledger rows), before those day files
    are replaced or removed: a month file never outlives a change to its sources. Only
    months that have a file or a row are touched (one listing of the symbol's months)."""
    months = {month_of(day) for day in days}
    if not months:
        return
    known = present_months(lake, symbol) | {month for _, month in store.month_entries(symbol)}
    stale = sorted(months & known)
    for month in stale:
        lake.delete(month_key(symbol, month))
    if stale:
        store.forget_months(symbol, stale)


def month_files(lake: LakeStore, symbol: str | None = None) -> set[tuple[str, Month]]:
    """Every (symbol, month) with a month file (of ``symbol`` only, if given), from one
    listing."""
    prefix = MONTHLY_DIR if symbol is None else f"{MONTHLY_DIR}/symbol={symbol}"
    found = set()
    for key in lake.list(prefix):
        parts = key.split("/")
        if len(parts) != 5 or parts[4] != PARTITION_FILE:
            continue
        try:
            month = (int(parts[2].removeprefix("year=")), int(parts[3].removeprefix("month=")))
        except ValueError:
            continue
        found.add((parts[1].removeprefix("symbol="), month))
    return found


def present_months(lake: LakeStore, symbol: str) -> set[Month]:
    """The months of ``symbol`` that have a month file, from one listing."""
    return {month for _, month in month_files(lake, symbol)}


@dataclass
class ConsolidationReport:
    """What :func:`consolidate` did: months built, already current, removed, refused."""

    built: list[tuple[str, Month]] = field(default_factory=list)
    current: int = 0
    removed: list[tuple[str, Month]] = field(default_factory=list)
    refused: dict[tuple[str, Month], str] = field(default_factory=dict)


def consolidate(
    lake: LakeStore,
    store: CheckpointStore,
    symbols: Iterable[str] | None = None,
    months: Iterable[Month] | None = None,
) -> ConsolidationReport:
    """Bring the month files of ``symbols`` (default: every symbol in the ledger) up to date:
    build each month whose every session is in the ledger, rebuild those whose sources
    changed or whose bytes differ from the ledger's (damaged), remove those whose sources
    are no longer all there. ``months`` limits it."""
    by_symbol: dict[str, dict[dt.date, LedgerEntry]] = {}
    for entry in store.all_entries():
        by_symbol.setdefault(entry.symbol, {})[entry.day] = entry
    recorded = store.month_entries()
    chosen = (
        sorted(set(by_symbol) | {symbol for symbol, _ in recorded})
        if symbols is None
        else sorted(set(symbols))
    )
    wanted = None if months is None else set(months)
    listed = (
        month_files(lake)  # the whole lake: one listing, not one per symbol
        if symbols is None
        else {pair for symbol in chosen for pair in month_files(lake, symbol)}
    )
    present_by_symbol: dict[str, set[Month]] = {}
    for name, month in listed:
        present_by_symbol.setdefault(name, set()).add(month)
    report = ConsolidationReport()
    builds: list[_Build] = []
    for symbol in chosen:
        days = by_symbol.get(symbol, {})
        present = present_by_symbol.get(symbol, set())
        known = {month for name, month in recorded if name == symbol}
        candidates = {month_of(day) for day in days} | present | known
        for month in sorted(candidates if wanted is None else candidates & wanted):
            build = _due_build(lake, store, symbol, month, days, recorded, present, report)
            if build is not None:
                builds.append(build)
    # Months build in parallel (reading and encoding Parquet release the GIL; on S3 the
    # requests overlap); the ledger is written from this thread, in order.
    with concurrent.futures.ThreadPoolExecutor(BUILD_THREADS) as pool:
        outcomes = pool.map(_run_build, [(lake, build) for build in builds])
        for build, outcome in zip(builds, outcomes, strict=True):
            _record_build(lake, store, build, outcome, report)
    return report


@dataclass(frozen=True)
class _Build:
    """A month file to (re)build from these day hashes."""

    symbol: str
    month: Month
    expected: dict[dt.date, str]
    exists: bool


def _due_build(
    lake: LakeStore,
    store: CheckpointStore,
    symbol: str,
    month: Month,
    days: Mapping[dt.date, LedgerEntry],
    recorded: Mapping[tuple[str, Month], MonthEntry],
    present: set[Month],
    report: ConsolidationReport,
) -> _Build | None:
    """What one month needs: nothing (current, or removed here as incomplete) or a build."""
    sessions = month_sessions(month)
    exists = month in present or (symbol, month) in recorded
    if not sessions or any(day not in days for day in sessions):
        if exists:
            invalidate_months(lake, store, symbol, [dt.date(*month, 1)])
            report.removed.append((symbol, month))
        return None
    expected = {day: days[day].sha256 for day in sessions}
    entry = recorded.get((symbol, month))
    unchanged = (
        entry is not None and entry.sources_sha256 == sources_digest(expected) and month in present
    )
    if unchanged and _sha256_at(lake, month_key(symbol, month)) == entry.sha256:
        report.current += 1
        return None
    return _Build(symbol, month, expected, exists)


def _run_build(task: tuple[LakeStore, _Build]) -> WrittenFile | SourceMismatch:
    lake, build = task
    try:
        return build_month(lake, build.symbol, build.month, build.expected)
    except SourceMismatch as mismatch:
        return mismatch


def _record_build(
    lake: LakeStore,
    store: CheckpointStore,
    build: _Build,
    outcome: WrittenFile | SourceMismatch,
    report: ConsolidationReport,
) -> None:
    key = (build.symbol, build.month)
    if isinstance(outcome, SourceMismatch):
        if build.exists:
            invalidate_months(lake, store, build.symbol, [dt.date(*build.month, 1)])
        report.refused[key] = str(outcome)
        logger.warning(
            "%s %04d-%02d not consolidated: %s",
            build.symbol,
            *build.month,
            outcome,
            extra={"event": "month.refused", "symbol": build.symbol},
        )
        return
    digest = sources_digest(build.expected)
    store.record_month(MonthEntry(build.symbol, build.month, outcome.rows, outcome.sha256, digest))
    report.built.append(key)


def reindex_months(lake: LakeStore, store: CheckpointStore) -> int:
    """Make the ledger's month rows agree with the month files (after the day rows were
    rebuilt from the lake): record a file it does not know whose footer names exactly the
    day files the ledger holds, remove one that names others, drop rows of gone files.
    Returns how many files were recorded."""
    recorded = store.month_entries()
    hashes: dict[tuple[str, dt.date], str] = {
        (entry.symbol, entry.day): entry.sha256 for entry in store.all_entries()
    }
    present = month_files(lake)
    adopted = 0
    for symbol, month in sorted(present - set(recorded)):
        data = lake.get(month_key(symbol, month))
        try:
            footer = pq.read_metadata(pa.BufferReader(data))
        except (OSError, pa.ArrowException):
            footer = None
        sources = decode_sources(footer.metadata) if footer is not None else None
        expected = {day: hashes.get((symbol, day), "") for day in month_sessions(month)}
        if footer is not None and sources and {s.day: s.sha256 for s in sources} == expected:
            sha = hashlib.sha256(data).hexdigest()
            digest = sources_digest(expected)
            store.record_month(MonthEntry(symbol, month, footer.num_rows, sha, digest))
            adopted += 1
        else:
            invalidate_months(lake, store, symbol, [dt.date(*month, 1)])
    for symbol, month in sorted(set(recorded) - present):
        store.forget_months(symbol, [month])
    return adopted


def _sha256_at(lake: LakeStore, key: str) -> str | None:
    """The sha256 of the bytes at ``key`` (``None`` if there are none)."""
    try:
        return hashlib.sha256(lake.get(key)).hexdigest()
    except FileNotFoundError:
        return None


def read_month_sources(
    lake: LakeStore, key: str, filesystem: tuple[Any, str] | None = None
) -> list[MonthSource] | None:
    """The sources named in the footer of the month file at ``key`` (``None``: no such
    file, or a footer that cannot be read: the day files are read instead). ``filesystem``:
    a remote lake's pyarrow filesystem and root, when the caller has one."""
    try:
        if isinstance(lake, LocalStore):
            metadata = pq.read_metadata(lake.path(key)).metadata
        else:
            remote, root = filesystem or lake_filesystem(lake)
            with remote.open_input_file(f"{root}/{key}") as handle:
                metadata = pq.read_metadata(handle).metadata
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        logger.warning("month file %s/%s unreadable, day files used: %s", lake.uri, key, exc)
        return None
    return decode_sources(metadata)


def usable_month_keys(
    lake: LakeStore,
    symbol: str,
    months: Sequence[Month],
    day_sizes: Mapping[dt.date, int],
    filesystem: tuple[Any, str] | None = None,
) -> dict[Month, str]:
    """Of ``months`` (whole months a read covers), those whose month file is current: it
    names every session of the month, and each day file is present at the size it had
    (``day_sizes``: the sizes of the present day files). ``filesystem``: see
    :func:`read_month_sources`."""
    if not months:
        return {}
    present = None
    if not isinstance(lake, LocalStore):
        present = present_months(lake, symbol)  # one listing, not a request per month
    usable = {}
    for month in months:
        sessions = month_sessions(month)
        if present is not None and month not in present:
            continue
        if not sessions or any(day not in day_sizes for day in sessions):
            continue
        key = month_key(symbol, month)
        sources = read_month_sources(lake, key, filesystem)
        if sources is None:
            continue
        named = {source.day: source.size for source in sources}
        if named == {day: day_sizes[day] for day in sessions}:
            usable[month] = key
    return usable
