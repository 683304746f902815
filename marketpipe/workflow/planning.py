"""Which partitions a configuration asks for: one per symbol and NYSE session."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import PARTITION_FILE, as_store, partition_path, present_partitions
from marketpipe.markettime.calendar import Session, new_york_date
from marketpipe.markettime.finality import Finality, describe_final_at
from marketpipe.markettime.spans import EVERY_DAY, DaySpans
from marketpipe.workflow.settings import WorkflowSettings


@dataclass(frozen=True)
class MonthPlan:
    """The trading days of one calendar month that fall inside the configured range."""

    year: int
    month: int
    days: tuple[dt.date, ...]

    @property
    def label(self) -> str:
        """``YYYY_MM``, used in rule names."""
        return f"{self.year:04d}_{self.month:02d}"

    def within(self, spans: DaySpans) -> MonthPlan:
        """The month with only the days ``spans`` cover."""
        return self if spans.unbounded else replace(self, days=spans.days(self.days))


def plan_months(days: Sequence[dt.date]) -> list[MonthPlan]:
    """Sorted trading days (the final sessions of a range) grouped by month."""
    return [
        MonthPlan(year, month, tuple(group))
        for (year, month), group in itertools.groupby(days, key=lambda day: (day.year, day.month))
    ]


def describe_not_final(pending: Sequence[Session], finality: Finality, shown: int = 3) -> str:
    """The sessions that are not final yet and when each becomes final, in one phrase."""
    named = ", ".join(
        f"{session.date} (final at {describe_final_at(finality.final_at(session))})"
        for session in pending[:shown]
    )
    if len(pending) > shown:
        named += f" and {len(pending) - shown} later session(s) through {pending[-1].date}"
    return named


@dataclass(frozen=True)
class PendingJob:
    """A (symbol, month) whose partitions are not all in the lake yet."""

    symbol: str
    month: MonthPlan
    missing: tuple[dt.date, ...]


def _present_days(month_dir: Path) -> set[int]:
    """Days of one symbol-month directory that hold a published partition file."""
    try:
        entries = list(os.scandir(month_dir))
    except FileNotFoundError:
        return set()
    return {
        int(entry.name[4:])
        for entry in entries
        if entry.name.startswith("day=")
        and os.path.exists(os.path.join(entry.path, PARTITION_FILE))
    }


def pending_jobs(
    lake: LakeStore | Path | str,
    symbols: list[str],
    months: list[MonthPlan],
    expected: Callable[[str], DaySpans] | None = None,
) -> list[PendingJob]:
    """The (symbol, month) groups with missing partitions, from one pass over the lake.

    ``expected`` gives the days a symbol should have bars (its security's listed life, its
    membership of a universe); a group's month then holds only those days. Planning work is
    proportional to what is missing: complete months cost one directory listing, and
    nothing is asked of Snakemake for them. On S3 the lake is listed (one request per 1,000
    keys), never asked about one partition at a time.
    """
    store = as_store(lake)
    listed = None if isinstance(store, LocalStore) else present_partitions(store, symbols)
    spans = {symbol: expected(symbol) if expected else EVERY_DAY for symbol in symbols}
    pending = []
    for whole in months:
        for symbol in symbols:
            month = whole.within(spans[symbol])
            if not month.days:
                continue
            if listed is None:
                month_dir = partition_path(store.uri, symbol, month.days[0]).parent.parent
                present = _present_days(month_dir)
            else:
                present = {day.day for day in month.days if (symbol, day) in listed}
            missing = tuple(day for day in month.days if day.day not in present)
            if missing:
                pending.append(PendingJob(symbol, month, missing))
    return pending


def symbols_label(symbols: Sequence[str]) -> str:
    """``AAPL``, or ``AAPL..SPY (3 symbols)`` for several."""
    if len(symbols) == 1:
        return symbols[0]
    return f"{symbols[0]}..{symbols[-1]} ({len(symbols)} symbols)"


@dataclass(frozen=True)
class FetchJob:
    """One Snakemake job: the missing days of a few symbols in one month, fetched together.

    Symbols missing the same days share one request stream, so their bars fill the same
    pages (Alpaca's page limit counts bars across symbols): a stream wastes at most the
    unused part of its last page, however many symbols it carries.
    """

    month: MonthPlan
    pending: tuple[PendingJob, ...]

    @property
    def symbols(self) -> tuple[str, ...]:
        """The job's symbols, sorted as the vendor pages them."""
        return tuple(group.symbol for group in self.pending)

    @property
    def name(self) -> str:
        """A readable label: the month and the symbol range."""
        first, last = self.symbols[0], self.symbols[-1]
        return (
            f"{self.month.label}/{first}" if first == last else f"{self.month.label}/{first}-{last}"
        )

    def marker(self, markers_dir: Path | str, run_id: str) -> str:
        """The job's output when the lake is on S3: a local file it writes when done.

        Snakemake cannot see objects without a request each; the run's plan (from one
        listing) already holds only missing partitions, so a job of this run is due.
        """
        return str(Path(markers_dir) / "jobs" / run_id / f"{self.name}.done")

    def outputs(self, data_dir: Path | str) -> list[str]:
        """Every partition path of the job's symbols in its month (present ones stay)."""
        return [
            str(partition_path(data_dir, symbol, day))
            for symbol in self.symbols
            for day in self.month.days
        ]

    def targets(self, data_dir: Path | str) -> list[str]:
        """The paths to request so Snakemake schedules this job.

        Every missing partition when some are present (so ``-n`` names them all), but one
        path for a month with nothing yet: at scale, asking Snakemake for every path of an
        empty history dominates planning (it matches each requested path against every
        rule's outputs).
        """
        if all(len(group.missing) == len(self.month.days) for group in self.pending):
            return [str(partition_path(data_dir, self.symbols[0], self.month.days[0]))]
        return [
            str(partition_path(data_dir, group.symbol, day))
            for group in self.pending
            for day in group.missing
        ]


def fetch_jobs(pending: list[PendingJob], symbols_per_job: int) -> list[FetchJob]:
    """Group pending (symbol, month) work into jobs of up to ``symbols_per_job`` symbols'
    months of partitions.

    Only symbols of the same month missing the same days share a job, since only they can
    share a stream; each group is split into jobs in symbol order. Symbols missing only a few
    days of their month share a job in larger numbers, up to the same count of partitions
    (at most :data:`MAX_STREAM_SYMBOLS`): a daily update of 500 symbols is three streams whose
    pages are all full but the last, instead of fifty. ``symbols_per_job`` 1 keeps one
    symbol per job.
    """
    if symbols_per_job < 1:
        raise ValueError(f"symbols_per_job must be at least 1, got {symbols_per_job}")
    groups: dict[tuple[MonthPlan, tuple[dt.date, ...]], list[PendingJob]] = {}
    for job in pending:
        groups.setdefault((job.month, job.missing), []).append(job)
    jobs = []
    for (month, missing), members in groups.items():
        members.sort(key=lambda job: job.symbol)
        size = symbols_per_job
        if symbols_per_job > 1:
            denser = symbols_per_job * SESSIONS_PER_MONTH // max(1, len(missing))
            size = max(symbols_per_job, min(denser, MAX_STREAM_SYMBOLS))
        for index in range(0, len(members), size):
            jobs.append(FetchJob(month, tuple(members[index : index + size])))
    jobs.sort(key=lambda job: (job.month.label, job.symbols))
    return jobs


# The most symbols packed into one job (and stream) when they miss few days: Alpaca's
# symbols travel in the request's URL, which servers cap at a few kilobytes.
MAX_STREAM_SYMBOLS = 200
# A whole month's sessions, the unit of ``symbols_per_job`` (a month planned only up to the
# range's end, as a daily update's is, still packs by it).
SESSIONS_PER_MONTH = 21
# Past this many partition paths, Snakemake is given one marker file per fetch job instead
# of the partitions themselves: its planning grows with every output it tracks (1.26M
# partitions, 500 symbols x 10 years, took 5.7 minutes and 5.3 GB), MarketPipe's own with
# the lake's listing only, and it names the missing partitions itself (announce_missing).
MAX_PARTITION_OUTPUTS = 20_000


def outputs_are_markers(lake_is_local: bool, jobs: Sequence[FetchJob]) -> bool:
    """Whether fetch jobs output a marker each (an S3 lake, or a plan too large for
    Snakemake to track partition by partition) rather than their partitions."""
    outputs = sum(len(job.symbols) * len(job.month.days) for job in jobs)
    return not lake_is_local or outputs > MAX_PARTITION_OUTPUTS


def fetched_months(jobs: Sequence[FetchJob]) -> set[tuple[str, tuple[int, int]]]:
    """The (symbol, (year, month)) pairs that ``jobs`` write into."""
    return {(symbol, (job.month.year, job.month.month)) for job in jobs for symbol in job.symbols}


def unchecked_action_symbols(settings: WorkflowSettings) -> list[str]:
    """Configured symbols whose corporate actions were never stored (new in the config)."""
    if not state_path(settings.state_dir).exists():
        return sorted(settings.config.symbols)
    with CheckpointStore(settings.state_dir) as store:
        checked = store.actions_entries()
    return sorted(set(settings.config.symbols) - set(checked))


def actions_marker(settings: WorkflowSettings) -> Path:
    """The file saying the corporate actions were brought up to date on the run's New York
    date: the ``corporate_actions`` job runs once per day that a run happens, and again in
    the run that adds a symbol whose actions were never stored (the marker then names that
    set of symbols), so adjusted reads of a new symbol work at once."""
    directory = settings.markers_dir / "corporate_actions"
    day = new_york_date(settings.now)
    unchecked = unchecked_action_symbols(settings)
    if unchecked:
        digest = hashlib.sha256(",".join(unchecked).encode()).hexdigest()[:10]
        return directory / f"checked-{day}-{digest}.json"
    done = sorted(directory.glob(f"checked-{day}*.json"))
    return done[0] if done else directory / f"checked-{day}.json"


def securities_marker(settings: WorkflowSettings) -> Path:
    """The file saying the security master was brought up to date on the run's New York
    date for these symbols and this range end: the ``security_master`` job runs once per
    day that a run happens, and again when either changes."""
    asked = ",".join(sorted(settings.config.symbols)) + f"|{settings.end.isoformat()}"
    digest = hashlib.sha256(asked.encode()).hexdigest()[:10]
    day = new_york_date(settings.now)
    return settings.markers_dir / "securities" / f"checked-{day}-{digest}.json"


def actions_due(settings: WorkflowSettings) -> bool:
    """Whether a run now would check the corporate actions (see :func:`actions_marker`)."""
    return (
        settings.fetches_actions
        and bool(settings.final_sessions)
        and not actions_marker(settings).exists()
    )


def securities_due(settings: WorkflowSettings) -> bool:
    """Whether a run now would bring the security master up to date (see
    :func:`securities_marker`)."""
    return (
        settings.keeps_securities
        and bool(settings.final_sessions)
        and not securities_marker(settings).exists()
    )
