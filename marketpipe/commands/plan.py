"""``marketpipe plan``: the missing partitions, and the requests and time they will cost."""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field

from marketpipe.connectors import PolygonConfig
from marketpipe.connectors.polygon_news import MAX_PAGE as MASSIVE_NEWS_PAGE
from marketpipe.connectors.polygon_ticks import POLYGON_TICK_LIMIT
from marketpipe.connectors.ticks import TICK_PAGE_LIMIT
from marketpipe.ingest.actions import SYMBOLS_PER_REQUEST
from marketpipe.ingest.news import consecutive_runs
from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.markettime.calendar import contiguous_runs, trading_sessions
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.workflow.news_planning import (
    ARTICLES_PER_PAGE,
    news_recheck_due,
    pending_news_jobs,
    recheck_days,
    stored_news,
)
from marketpipe.workflow.planning import actions_due, fetch_jobs, securities_due
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import planned_coverage
from marketpipe.workflow.tick_planning import pending_tick_jobs

POLYGON_PAGE_SIZE: int = PolygonConfig.model_fields["page_size"].default
# Share of the feed's session minutes that have trades, for a symbol never fetched before.
_DEFAULT_FILL = {"sip": 0.9, "iex": 0.6}
# Any regular full session serves to measure a feed's window length.
_REFERENCE_DAY = dt.date(2024, 1, 3)
# Articles a day names a symbol in, before any day was stored (Alpaca's news, large caps).
_DEFAULT_ARTICLES_PER_SYMBOL_DAY = 2
# A liquid large cap's prints a day, before any day was stored (order of magnitude).
_DEFAULT_TICKS_PER_DAY = {"trades": 500_000, "quotes": 5_000_000}


@dataclass(frozen=True)
class PlannedJob:
    """One workflow job: symbols of one month missing the same partitions."""

    symbols: tuple[str, ...]
    month: str
    missing: int
    runs: int
    estimated_bars: int
    estimated_requests: int
    file_reads: int = 0  # flat files (one per missing day), outside the request budget


@dataclass(frozen=True)
class Plan:
    """Everything missing, with the cost at the configured request budget."""

    jobs: list[PlannedJob]
    planned_partitions: int
    requests_per_minute: int
    actions_requests: int = 0  # today's corporate-actions check, if due (0 if not)
    securities_requests: int = 0  # today's security-master check, if due (0 if not)
    news_missing: int = 0  # news days to fetch
    news_requests: int = 0  # for them, and for today's news recheck if due
    tick_days: dict[str, int] = field(default_factory=dict)  # trades/quotes days to fetch
    tick_rows: int = 0  # the prints they are expected to hold
    tick_requests: int = 0  # and the pages that takes

    @property
    def missing_partitions(self) -> int:
        """Partitions to fetch."""
        return sum(job.missing for job in self.jobs)

    @property
    def estimated_requests(self) -> int:
        """API requests the run should take: the bars, news, trades and quotes, and the
        corporate-actions and security-master checks."""
        bars = sum(job.estimated_requests for job in self.jobs)
        checks = self.actions_requests + self.securities_requests
        return bars + checks + self.news_requests + self.tick_requests

    @property
    def file_reads(self) -> int:
        """Flat files the run reads (none without ``polygon.flat_files``)."""
        return sum(job.file_reads for job in self.jobs)

    @property
    def estimated_minutes(self) -> float:
        """Minutes the requests take at the rate budget (the floor on a free plan)."""
        return self.estimated_requests / self.requests_per_minute


def default_bars_per_day(timeframe: Timeframe, feed: str) -> float:
    """A fresh symbol's expected bars per session from the feed's window and timeframe."""
    if timeframe.unit is TimeframeUnit.DAY:
        return 1.0
    (session,) = trading_sessions(_REFERENCE_DAY, _REFERENCE_DAY)
    start, end = session.extended_window(feed)
    minutes = (end - start).total_seconds() / 60
    width = (timeframe.seconds or 60) / 60
    return math.ceil(minutes / width) * _DEFAULT_FILL.get(feed, 0.9)


def _bars_per_day(settings: WorkflowSettings) -> dict[str, float]:
    """Observed mean bars per non-empty partition, per symbol, from the ledger."""
    if not state_path(settings.state_dir).exists():
        return {}
    observed = {}
    with CheckpointStore(settings.state_dir) as store:
        for symbol in settings.config.symbols:
            rows = [entry.rows for entry in store.ledger(symbol).values() if entry.rows]
            if rows:
                observed[symbol] = statistics.fmean(rows)
    return observed


def _run_requests(settings: WorkflowSettings, bars_by_symbol: list[float]) -> int:
    """Requests for one run of days: Alpaca's pages hold many symbols, Polygon's one ticker."""
    if settings.config.vendor == "polygon":
        return sum(max(1, math.ceil(bars / POLYGON_PAGE_SIZE)) for bars in bars_by_symbol)
    return max(1, math.ceil(sum(bars_by_symbol) / settings.config.alpaca.page_size))


def build_plan(settings: WorkflowSettings) -> Plan:
    """Find missing partitions (files that do not exist, as Snakemake does) and cost them."""
    coverage = planned_coverage(settings)
    observed = _bars_per_day(settings)
    fallback = (
        statistics.fmean(observed.values())
        if observed
        else default_bars_per_day(settings.timeframe, settings.feed)
    )
    pending = coverage.pending(settings.lake)
    jobs = []
    for job in fetch_jobs(pending, settings.symbols_per_job):
        # The job's symbols miss the same days, so each run of days is one shared stream.
        missing = list(job.pending[0].missing)
        runs = contiguous_runs(missing, list(job.month.days))
        per_symbol = [observed.get(symbol, fallback) for symbol in job.symbols]
        per_day = sum(per_symbol)
        requests = sum(
            _run_requests(settings, [bars * len(run) for bars in per_symbol]) for run in runs
        )
        # With flat files, a day's file replaces the job's requests (REST answers only the
        # days whose file is not out yet: at most the latest, not counted here).
        files = len(missing) if settings.reads_flat_files else 0
        month = job.month.label.replace("_", "-")
        jobs.append(
            PlannedJob(
                job.symbols,
                month,
                len(missing) * len(job.symbols),
                len(runs),
                round(per_day * len(missing)),
                0 if files else requests,
                files,
            )
        )
    news_missing, news_requests = _news_cost(settings)
    tick_days, tick_rows, tick_requests = _tick_cost(settings)
    return Plan(
        jobs=jobs,
        planned_partitions=coverage.partitions,
        requests_per_minute=settings.vendor_section.requests_per_minute,
        actions_requests=_actions_cost(settings) if actions_due(settings) else 0,
        securities_requests=_securities_cost(settings),
        news_missing=news_missing,
        news_requests=news_requests,
        tick_days=tick_days,
        tick_rows=tick_rows,
        tick_requests=tick_requests,
    )


def _actions_cost(settings: WorkflowSettings) -> int:
    """Today's corporate-actions check: Alpaca's pages name up to 100 symbols; Massive asks
    about each symbol's splits and dividends apart."""
    symbols = len(settings.config.symbols)
    if settings.config.vendor == "polygon":
        return 2 * symbols
    return math.ceil(symbols / SYMBOLS_PER_REQUEST)


def _securities_cost(settings: WorkflowSettings) -> int:
    """Today's security-master check, if due: Alpaca's asset of each symbol (its renamed
    ones: two), Polygon's ticker details and events of each (a ticker nobody uses on the
    range's last day costs a few more, asked further back)."""
    if not securities_due(settings):
        return 0
    symbols = settings.config.symbols
    if settings.config.vendor == "polygon":
        return 2 * len(symbols)
    renamed = sum(1 for security in settings.planned_securities.values() if security.renamed)
    return len(symbols) + renamed


def _news_cost(settings: WorkflowSettings) -> tuple[int, int]:
    """Missing news days, and the requests for them and today's recheck (if due)."""
    stored = stored_news(settings)
    per_day = (
        statistics.fmean(entry.rows for entry in stored.values())
        if stored
        else _DEFAULT_ARTICLES_PER_SYMBOL_DAY * len(settings.config.symbols)
    )

    symbols = len(settings.config.symbols)

    def requests(days: list[dt.date]) -> int:
        runs = consecutive_runs(days)
        if settings.config.vendor == "polygon":  # a stream per symbol, 1,000 a page
            per_symbol = per_day / max(1, symbols)
            return sum(
                symbols * max(1, math.ceil(per_symbol * len(run) / MASSIVE_NEWS_PAGE))
                for run in runs
            )
        return sum(max(1, math.ceil(per_day * len(run) / ARTICLES_PER_PAGE)) for run in runs)

    missing = [day for job in pending_news_jobs(settings) for day in job.missing]
    recheck = recheck_days(settings, stored, set(missing)) if news_recheck_due(settings) else []
    return len(missing), requests(missing) + requests(recheck)


def _tick_cost(settings: WorkflowSettings) -> tuple[dict[str, int], int, int]:
    """Missing trades and quotes days by kind, the prints expected in them (the stored days'
    mean, else a liquid large cap's day) and the pages that takes."""
    jobs = pending_tick_jobs(settings)
    if not jobs:
        return {}, 0, 0
    stored: dict[str, list[int]] = {kind: [] for kind in _DEFAULT_TICKS_PER_DAY}
    if state_path(settings.state_dir).exists():
        with CheckpointStore(settings.state_dir) as store:
            for (kind, _, _), entry in store.tick_entries().items():
                if entry.rows:
                    stored[kind].append(entry.rows)
    if settings.config.vendor == "polygon":
        page = min(settings.config.polygon.page_size, POLYGON_TICK_LIMIT)
    else:
        page = min(settings.config.alpaca.page_size, TICK_PAGE_LIMIT)
    days: dict[str, int] = {}
    rows = requests = 0
    for job in jobs:
        per_day = statistics.fmean(stored[job.kind]) if stored[job.kind] else None
        expected = round(per_day or _DEFAULT_TICKS_PER_DAY[job.kind])
        days[job.kind] = days.get(job.kind, 0) + len(job.missing)
        rows += expected * len(job.missing)
        requests += max(1, math.ceil(expected / page)) * len(job.missing)
    return days, rows, requests
