"""The consolidated read layer: one file per closed symbol-month, derived from its day files.

A year of one symbol is 252 day files, and opening a file costs more than reading its rows;
so once every session of a symbol-month is in the lake, its rows are also written as one
file, ``ohlcv_monthly/symbol=S/year=YYYY/month=MM/bars.parquet`` (same columns, sorted,
page checksums), and reads use it (as Nautilus' ``consolidate_catalog`` and kdb+'s
partitions do). The day files stay the source of truth, the Snakemake targets and the unit
of repair; a month file is only ever a copy of them:

- its footer names the day files it was built from (day, sha256, size, md5) and the ledger
  records it with the digest of their hashes (:mod:`marketpipe.lake.month_sources`);
- whatever replaces or removes a day file first removes the month file over it
  (:func:`invalidate_months`), and a read uses a month file only while every one of its
  day files is present, with its size, and not replaced since (a later modification time
  than the month file's; another ETag on S3) (:func:`usable_month_keys`), so a read never
  serves a month that no longer matches, even after a day file was rewritten behind
  MarketPipe's back with bytes of the same size;
- :func:`consolidate` builds missing months, rebuilds stale ones and removes those whose
  days are no longer all there.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.lake.ledger import CheckpointStore, LedgerEntry, MonthEntry
from marketpipe.lake.ledger_months import Month
from marketpipe.lake.month_sources import (
    MONTH_KEY,
    SOURCES_KEY,
    MonthSource,
    decode_sources,
    encode_sources,
    month_day_stamps,
    month_file_stamp,
    month_files,
    month_key,
    month_of,
    month_sessions,
    present_months,
    sources_digest,
    sources_match,
)
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import (
    DAY_KEY,
    LAKE_SCHEMA,
    DamagedFileError,
    WrittenFile,
    partition_key,
    publish_table,
    read_verified,
)

logger = logging.getLogger(__name__)

BUILD_THREADS = 4  # month files built at once by consolidate()


class SourceMismatch(ValueError):
    """A day file is missing, damaged or differs from its ledger row: no month is built."""


def build_month(
    lake: LakeStore, symbol: str, month: Month, expected: Mapping[dt.date, str]
) -> WrittenFile:
    """Write the month file of ``symbol`` from its day files, each checked against the
    sha256 the ledger recorded for it (``expected``, every session of the month), their
    stamps taken before and after reading them (a day file replaced meanwhile: no month)."""
    tables, sources, metadata = [], [], {}
    stamps = month_day_stamps(lake, symbol, month)
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
        sources.append(
            MonthSource(day, sha, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest())
        )
    if month_day_stamps(lake, symbol, month) != stamps:
        raise SourceMismatch(
            f"{symbol} {month[0]:04d}-{month[1]:02d}: a day file changed meanwhile"
        )
    metadata[MONTH_KEY] = f"{month[0]:04d}-{month[1]:02d}"
    metadata[SOURCES_KEY] = encode_sources(sources)
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
    if unchanged and _is_current(lake, symbol, month, entry):
        report.current += 1
        return None
    return _Build(symbol, month, expected, exists)


def _is_current(lake: LakeStore, symbol: str, month: Month, entry: MonthEntry) -> bool:
    """Whether the month file has the bytes the ledger recorded and names the day files as
    they are now (not a day file rewritten since, nor one copied without its times)."""
    try:
        data = lake.get(month_key(symbol, month))
    except FileNotFoundError:
        return False
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        return False
    sources = decode_sources(pq.read_metadata(pa.BufferReader(data)).metadata)
    if sources is None:
        return False
    month_stamp = month_file_stamp(lake, symbol, month)
    days = month_day_stamps(lake, symbol, month)
    return sources_match(sources, days, month_stamp, lake.is_local)


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
    remember_month_stat(lake, store, build.symbol, build.month)
    report.built.append(key)


def remember_month_stat(lake: LakeStore, store: CheckpointStore, symbol: str, month: Month) -> None:
    """Remember a local month file's size and modification time as it was just recorded."""
    if isinstance(lake, LocalStore):
        key = month_key(symbol, month)
        status = lake.path(key).stat()
        store.record_file_stamps([(key, status.st_size, status.st_mtime_ns)])


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
