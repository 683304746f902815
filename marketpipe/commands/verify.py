"""``marketpipe verify``: is every partition the file the ledger recorded, and sane?"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.lake.actions import STORED_ACTIONS_SCHEMA, actions_key, stored_symbols
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import (
    Month,
    decode_sources,
    month_files,
    month_key,
    month_sessions,
)
from marketpipe.lake.news import news_key, parse_news_file, present_news_days
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import (
    DAY_KEY,
    LAKE_DIR,
    LAKE_SCHEMA,
    PARTITION_FILE,
    SYMBOL_COLUMN,
    SYMBOL_KEY,
    DamagedFileError,
    damage_of,
    new_york_day_keys,
    partition_key,
    partition_of,
    repair_advice,
)
from marketpipe.lake.ticks import KINDS, present_tick_days, tick_file_problems, tick_key
from marketpipe.observability.progress import with_progress
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import premature_partitions, require_lake


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or one ledger row)."""

    path: str  # where the file is, as the lake's root names it (a directory or s3://)
    problem: str


@dataclass(frozen=True)
class VerifyResult:
    """How many files were checked and what was wrong."""

    checked: int
    problems: list[Problem]
    actions_checked: int = 0  # corporate-actions files
    news_checked: int = 0  # news day files
    months_checked: int = 0  # consolidated month files
    ticks_checked: int = 0  # trades and quotes day files


def _check_contents(data: bytes, symbol: str, day: dt.date) -> str | None:
    try:
        table = pq.read_table(
            pa.BufferReader(data), page_checksum_verification=True, use_threads=False
        )
    except (OSError, pa.ArrowException) as exc:
        return damage_of(exc)
    if SYMBOL_COLUMN in table.column_names:
        return (
            "written by an earlier release (the symbol column is inside the file, which "
            "pandas cannot read); run `marketpipe migrate`"
        )
    if not table.schema.remove_metadata().equals(LAKE_SCHEMA.remove_metadata()):
        return "schema differs from the canonical OHLCV schema (without symbol)"
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if metadata.get(SYMBOL_KEY) != symbol or metadata.get(DAY_KEY) != day.isoformat():
        return (
            f"its metadata names {metadata.get(SYMBOL_KEY)} {metadata.get(DAY_KEY)}, "
            f"not the path's {symbol} {day}"
        )
    if table.num_rows == 0:
        return None
    wanted = day.year * 10_000 + day.month * 100 + day.day
    keys = new_york_day_keys(table)
    wrong = pc.sum(pc.not_equal(keys, wanted)).as_py()
    if wrong:
        return f"{wrong} row(s) belong to another New York day than {day}"
    return None


def _check_actions_contents(data: bytes, symbol: str) -> str | None:
    try:
        table = pq.read_table(
            pa.BufferReader(data), page_checksum_verification=True, use_threads=False
        )
    except (OSError, pa.ArrowException) as exc:
        return damage_of(exc)
    if not table.schema.remove_metadata().equals(STORED_ACTIONS_SCHEMA.remove_metadata()):
        return "schema differs from the stored corporate-actions schema"
    named = (table.schema.metadata or {}).get(SYMBOL_KEY.encode(), b"").decode()
    if named != symbol:
        return f"its metadata names {named or 'no symbol'}, not the path's {symbol}"
    if pc.count_distinct(table["id"]).as_py() != table.num_rows:
        return "an action id appears more than once"
    return None


def verify_actions(lake: LakeStore, state_dir: Path) -> tuple[int, list[Problem]]:
    """Re-hash every corporate-actions file against the ledger and check its contents."""
    with CheckpointStore(state_dir) as store:
        ledger = store.actions_entries()
    problems: list[Problem] = []
    symbols = stored_symbols(lake)
    for symbol in symbols:
        key = actions_key(symbol)
        where = f"{lake.uri}/{key}"
        data = lake.get(key)
        entry = ledger.get(symbol)
        if entry is None:
            problems.append(Problem(where, "no ledger row records this file"))
        elif hashlib.sha256(data).hexdigest() != entry.sha256:
            problems.append(
                Problem(where, f"content differs from the ledger (sha256); {repair_advice(where)}")
            )
        issue = _check_actions_contents(data, symbol)
        if issue:
            problems.append(Problem(where, issue))
    for symbol in sorted(set(ledger) - set(symbols)):
        where = f"{lake.uri}/{actions_key(symbol)}"
        problems.append(Problem(where, "recorded in the ledger but the file is missing"))
    return len(symbols), problems


def verify_news(lake: LakeStore, state_dir: Path) -> tuple[int, list[Problem]]:
    """Re-hash every news day file against the ledger and read it (page checksums, schema)."""
    with CheckpointStore(state_dir) as store:
        ledger = store.news_entries()
    problems: list[Problem] = []
    days = sorted(present_news_days(lake))
    for day in days:
        key = news_key(day)
        where = f"{lake.uri}/{key}"
        entry = ledger.get(day)
        data = lake.get(key)
        if entry is None:
            problems.append(Problem(where, "no ledger row records this file"))
        elif hashlib.sha256(data).hexdigest() != entry.sha256:
            problems.append(
                Problem(where, f"content differs from the ledger (sha256); {repair_advice(where)}")
            )
        try:
            parse_news_file(data, where)
        except (DamagedFileError, pa.ArrowException) as exc:
            problems.append(Problem(where, f"unreadable as news: {exc}"))
    for day in sorted(set(ledger) - set(days)):
        where = f"{lake.uri}/{news_key(day)}"
        problems.append(Problem(where, "recorded in the ledger but the file is missing"))
    return len(days), problems


def verify_ticks(lake: LakeStore, state_dir: Path) -> tuple[int, list[Problem]]:
    """Re-hash every trades and quotes file against the ledger and read it through (page
    checksums, schema, footer, prints inside their day and in time order)."""
    with CheckpointStore(state_dir) as store:
        ledger = store.tick_entries()
    problems: list[Problem] = []
    checked = 0
    for kind in KINDS:
        present = sorted(present_tick_days(lake, kind, None))
        for symbol, day in with_progress(present, len(present), f"verifying {kind}"):
            checked += 1
            where = f"{lake.uri}/{tick_key(kind, symbol, day)}"
            entry = ledger.get((kind, symbol, day))
            for issue in tick_file_problems(lake, kind, symbol, day, entry and entry.sha256):
                advice = f"; {repair_advice(where)}" if issue.startswith("content") else ""
                problems.append(Problem(where, issue + advice))
        recorded = {(symbol, day) for stored_kind, symbol, day in ledger if stored_kind == kind}
        for symbol, day in sorted(recorded - set(present)):
            where = f"{lake.uri}/{tick_key(kind, symbol, day)}"
            problems.append(Problem(where, "recorded in the ledger but the file is missing"))
    return checked, problems


def _differs_from_ledger(where: str) -> str:
    return f"content differs from the ledger (sha256); {repair_advice(where)}"


MONTH_REPAIR = "a month file is only a copy of its day files: `marketpipe consolidate` rebuilds it"


def _month_problem(data: bytes, month: Month, hashes: dict[dt.date, str]) -> str | None:
    """What is wrong with a month file's contents, or ``None``."""
    try:
        file = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        table = file.read(use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        return damage_of(exc)
    if not table.schema.remove_metadata().equals(LAKE_SCHEMA.remove_metadata()):
        return "schema differs from the canonical OHLCV schema (without symbol)"
    sources = decode_sources(table.schema.metadata)
    if sources is None:
        return "its footer names no source day files"
    sessions = month_sessions(month)
    if {source.day: source.sha256 for source in sources} != {d: hashes.get(d) for d in sessions}:
        return f"stale: its day files changed or are gone since it was built; {MONTH_REPAIR}"
    return None


def verify_months(
    lake: LakeStore, state_dir: Path, hashes: dict[tuple[str, dt.date], str]
) -> tuple[int, list[Problem]]:
    """Re-hash every month file against the ledger and check it against the current hashes
    of its day files (``hashes``, from the ledger)."""
    with CheckpointStore(state_dir) as store:
        ledger = store.month_entries()
    problems: list[Problem] = []
    present = sorted(month_files(lake))
    for symbol, month in present:
        key = month_key(symbol, month)
        where = f"{lake.uri}/{key}"
        data = lake.get(key)
        entry = ledger.get((symbol, month))
        if entry is None:
            problems.append(Problem(where, f"no ledger row records this file; {MONTH_REPAIR}"))
        elif hashlib.sha256(data).hexdigest() != entry.sha256:
            problems.append(Problem(where, f"content differs from the ledger; {MONTH_REPAIR}"))
        days = {d: hashes[(symbol, d)] for d in month_sessions(month) if (symbol, d) in hashes}
        issue = _month_problem(data, month, days)
        if issue:
            problems.append(Problem(where, issue))
    for symbol, month in sorted(set(ledger) - set(present)):
        where = f"{lake.uri}/{month_key(symbol, month)}"
        missing = f"recorded in the ledger but the file is missing; {MONTH_REPAIR}"
        problems.append(Problem(where, missing))
    return len(present), problems


def verify_lake(settings: WorkflowSettings) -> VerifyResult:
    """Re-hash every partition, month, corporate-actions, news and tick file against the ledger and
    check schema, row placement and that each month file matches its day files."""
    require_lake(settings)
    lake = settings.lake
    problems: list[Problem] = []
    checked = 0
    seen: set[tuple[str, dt.date]] = set()
    with CheckpointStore(settings.state_dir) as store:
        ledger = {(entry.symbol, entry.day): entry for entry in store.all_entries()}
    keys = [key for key in lake.list(LAKE_DIR) if key.endswith(f"/{PARTITION_FILE}")]
    for key in with_progress(keys, len(keys), "verifying"):
        checked += 1
        where = f"{lake.uri}/{key}"
        located = partition_of(Path(key))
        if located is None:
            problems.append(Problem(where, "not at a symbol=/year=/month=/day= path with a date"))
            continue
        symbol, day = located
        seen.add((symbol, day))
        data = lake.get(key)
        entry = ledger.get((symbol, day))
        if entry is None:
            problems.append(Problem(where, "no ledger row records this file"))
        elif hashlib.sha256(data).hexdigest() != entry.sha256:
            problems.append(
                Problem(where, f"content differs from the ledger (sha256); {repair_advice(where)}")
            )
        issue = _check_contents(data, symbol, day)
        if issue:
            problems.append(Problem(where, issue))
    for (symbol, day), _entry in sorted(ledger.items()):
        if (symbol, day) not in seen:
            where = f"{lake.uri}/{partition_key(symbol, day)}"
            problems.append(Problem(where, "recorded in the ledger but the file is missing"))
    actions_checked, actions_problems = verify_actions(lake, settings.state_dir)
    problems.extend(actions_problems)
    news_checked, news_problems = verify_news(lake, settings.state_dir)
    problems.extend(news_problems)
    ticks_checked, tick_problems = verify_ticks(lake, settings.state_dir)
    problems.extend(tick_problems)
    hashes = {key: entry.sha256 for key, entry in ledger.items()}
    months_checked, month_problems = verify_months(lake, settings.state_dir, hashes)
    problems.extend(month_problems)
    for symbol, day in premature_partitions(settings):
        problems.append(
            Problem(
                f"{lake.uri}/{partition_key(symbol, day)}",
                "written before its session was final (by an earlier release); "
                "`marketpipe update` fetches it again",
            )
        )
    return VerifyResult(
        checked, problems, actions_checked, news_checked, months_checked, ticks_checked
    )
