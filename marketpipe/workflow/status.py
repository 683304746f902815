"""What the lake holds and lacks for a configuration: the facts behind ``status`` and reports."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass

from marketpipe.lake.integrity import (
    DAMAGED_DIR,
    Damage,
    FileDamage,
    describe_damage,
    find_damaged,
    find_damaged_files,
    move_aside,
    remove_damaged_files,
)
from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.news import present_news_days
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import LAKE_DIR, present_partitions
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.markettime.spans import EVERY_DAY, DaySpans
from marketpipe.observability.logs import current_run_id
from marketpipe.workflow.planning import MonthPlan, PendingJob, pending_jobs, plan_months
from marketpipe.workflow.settings import WorkflowSettings


def damaged_partitions(
    settings: WorkflowSettings, repair: bool = False
) -> list[Damage | FileDamage]:
    """Partitions, month, news and corporate-actions files of a local lake changed on disk
    since they were written (one ``stat`` each, a hash only for those); with ``repair`` they
    are moved aside under ``_damaged/`` and dropped from the ledger, so the run fetches (or,
    a month file, builds) them again. S3 lakes: none (``verify`` names them there)."""
    lake = settings.lake
    if not isinstance(lake, LocalStore) or not state_path(settings.state_dir).exists():
        return []
    with CheckpointStore(settings.state_dir) as store:
        days = find_damaged(store, lake)
        files = find_damaged_files(store, lake)
        damaged: list[Damage | FileDamage] = [*days, *files]
        if repair and damaged:
            where = move_aside(store, lake, days, current_run_id())
            remove_damaged_files(store, lake, files, current_run_id())
            where = where or lake.path(f"{DAMAGED_DIR}/{current_run_id()}")
            print(
                f"[marketpipe] {len(damaged)} damaged file(s) moved aside to {where} "
                f"and made again in this run: {describe_damage(damaged)}",
                file=sys.stderr,
                flush=True,
            )
    return damaged


class LakeNotFoundError(LookupError):
    """The configured lake has not been created yet; the message says what to run."""


def require_lake(settings: WorkflowSettings) -> None:
    """Fail clearly when the lake has not been created yet."""
    lake = settings.lake
    exists = (lake.root / LAKE_DIR).is_dir() if isinstance(lake, LocalStore) else lake.any(LAKE_DIR)
    if not exists:
        raise LakeNotFoundError(
            f"no lake at {lake.uri}/ (data_dir); run `snakemake --cores 8` first"
        )


@dataclass(frozen=True)
class Coverage:
    """The planned (symbol, day) grid of a configuration: every final session of the range
    that a symbol should have bars (see :meth:`WorkflowSettings.expected_days`)."""

    symbols: list[str]
    months: list[MonthPlan]
    expected: Callable[[str], DaySpans] = lambda _symbol: EVERY_DAY

    @property
    def days(self) -> list[dt.date]:
        """Every planned trading day, in order."""
        return [day for month in self.months for day in month.days]

    def days_of(self, symbol: str) -> list[dt.date]:
        """The planned trading days of ``symbol``."""
        return list(self.expected(symbol).days(self.days))

    @property
    def partitions(self) -> int:
        """How many (symbol, day) partitions are planned."""
        return sum(len(self.days_of(symbol)) for symbol in self.symbols)

    def pending(self, lake: LakeStore) -> list[PendingJob]:
        """The planned partitions the lake lacks, by symbol and month."""
        return pending_jobs(lake, self.symbols, self.months, self.expected)


def planned_coverage(settings: WorkflowSettings) -> Coverage:
    """The symbols and trading days the configuration asks for."""
    config = settings.config
    return Coverage(list(config.symbols), plan_months(settings.final_days), settings.expected_days)


@dataclass(frozen=True)
class SymbolStatus:
    """One symbol's coverage of the configured range."""

    symbol: str
    planned: int
    present: int
    known_empty: int
    missing: int
    rows: int
    quarantined_rows: int
    flagged_rows: int
    refreshed: int
    last_bar: dt.datetime | None

    @property
    def last_bar_new_york(self) -> str:
        """The last bar's start in New York time (the session's own clock), or ``-``."""
        if self.last_bar is None:
            return "-"
        return self.last_bar.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")


@dataclass(frozen=True)
class SymbolContents:
    """What the lake holds of one symbol, whatever the config asks for now."""

    symbol: str
    first: dt.date
    last: dt.date
    partitions: int
    known_empty: int
    rows: int
    bytes: int  # 0 where the ledger does not record sizes (an S3 lake)
    gaps: int  # NYSE sessions between first and last without a partition
    in_config: bool


def lake_contents(settings: WorkflowSettings) -> list[SymbolContents]:
    """Every symbol the lake's ledger records, also those outside the config (an earlier
    ``--config symbols=...``), with its range, partitions, bars, bytes and gaps."""
    if not state_path(settings.state_dir).exists():
        return []
    with CheckpointStore(settings.state_dir) as store:
        rows = store.symbol_contents()
    configured = set(settings.config.symbols)
    contents = []
    for symbol, first, last, partitions, empty, bars, size in rows:
        first_day, last_day = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        sessions = len(trading_sessions(first_day, last_day))
        contents.append(
            SymbolContents(
                symbol,
                first_day,
                last_day,
                partitions,
                empty,
                bars,
                size,
                max(0, sessions - partitions),
                symbol in configured,
            )
        )
    return contents


def missing_partitions(settings: WorkflowSettings) -> list[tuple[str, dt.date]]:
    """Every (symbol, day) of the range that is final but has no partition file."""
    coverage = planned_coverage(settings)
    return [(job.symbol, day) for job in coverage.pending(settings.lake) for day in job.missing]


def premature_partitions(settings: WorkflowSettings) -> list[tuple[str, dt.date]]:
    """Partitions the ledger says were published before their session was final.

    Releases before finality wrote today's session while it was still trading, and future
    sessions as known-empty; such a partition can never be right, and a rerun would keep it.
    """
    if not state_path(settings.state_dir).exists():
        return []
    finality = settings.finality
    with CheckpointStore(settings.state_dir) as store:
        # A session is final at most a few days after it began (1Day over a long weekend).
        candidates = store.published_within(days=8)
    if not candidates:
        return []
    days = [day for _, day, _ in candidates]
    sessions = {session.date: session for session in trading_sessions(min(days), max(days))}
    return sorted(
        (symbol, day)
        for symbol, day, published_at in candidates
        if day in sessions and published_at < finality.final_at(sessions[day])
    )


def lake_status(settings: WorkflowSettings) -> list[SymbolStatus]:
    """Coverage per symbol, from the files and the checkpoint ledger."""
    require_lake(settings)
    coverage = planned_coverage(settings)
    listed = present_partitions(settings.lake, coverage.symbols)
    with CheckpointStore(settings.state_dir) as store:
        last_bars = store.high_water_marks()
        result = []
        for symbol in coverage.symbols:
            days = coverage.days_of(symbol)
            ledger = store.ledger(symbol, days)
            present = [d for d in days if (symbol, d) in listed]
            entries = [ledger[day] for day in present if day in ledger]
            planned_days = set(days)
            refreshed = {r.day for r in store.replacements(symbol) if r.day in planned_days}
            result.append(
                SymbolStatus(
                    symbol=symbol,
                    planned=len(days),
                    present=len(present),
                    known_empty=sum(entry.known_empty for entry in entries),
                    missing=len(days) - len(present),
                    rows=sum(entry.rows for entry in entries),
                    quarantined_rows=sum(entry.rejected_rows for entry in entries),
                    flagged_rows=sum(entry.flagged_rows for entry in entries),
                    refreshed=len(refreshed),
                    last_bar=last_bars.get(symbol),
                )
            )
    return result


def actions_summary(settings: WorkflowSettings) -> str:
    """One line on the stored corporate actions of the configured symbols."""
    with CheckpointStore(settings.state_dir) as store:
        entries = store.actions_entries()
    symbols = settings.config.symbols
    stored = [entries[symbol] for symbol in symbols if symbol in entries]
    never = [symbol for symbol in symbols if symbol not in entries]
    if not stored:
        return "corporate actions: never checked (the next workflow run stores them)"
    checked = min(entry.covered_through for entry in stored)
    line = (
        f"corporate actions: {sum(entry.rows for entry in stored)} stored for "
        f"{len(stored)} of {len(symbols)} symbol(s), checked through {checked}"
    )
    return line + (f"; never checked: {', '.join(never)}" if never else "")


def news_summary(settings: WorkflowSettings) -> str:
    """One line on the stored news of the range's final days."""
    if not settings.fetches_news:
        return "news: not fetched (news.fetch: false, or a vendor without news)"
    with CheckpointStore(settings.state_dir) as store:
        entries = store.news_entries()
        changes = store.news_history()
    wanted, present = settings.news_days, present_news_days(settings.lake)
    stored = [entries[day] for day in wanted if day in entries and day in present]
    symbols = settings.config.symbols
    partial = sum(1 for entry in stored if not entry.covers(symbols))
    stored = [entry for entry in stored if entry.covers(symbols)]
    missing = len(wanted) - len(stored) - partial
    line = (
        f"news: {len(stored)} of {len(wanted)} final day(s) stored, "
        f"{sum(entry.rows for entry in stored):,} article(s)"
    )
    refused = sum(entry.rejected for entry in stored)
    if refused:
        line += f", {refused} refused record(s) kept apart (_quarantine/news)"
    if changes:
        line += f", {len(changes)} day(s) replaced by later versions (last {changes[-1].day})"
    if partial:
        line += f"; {partial} day(s) lack the news of a symbol added since (the next run adds it)"
    return line + (f"; {missing} day(s) missing" if missing else "")
