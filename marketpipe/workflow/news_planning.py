"""Which news days a configuration asks for, which are missing, and when to re-read them.

A news day is a New York calendar day of the range that is over (see
:attr:`WorkflowSettings.news_days`). Missing days are grouped by month into one job each
(the job asks for all configured symbols at once, one stream per run of consecutive days).
Once per New York date a run also re-reads the last ``news.recheck_days`` stored days.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.ledger_rows import NewsEntry
from marketpipe.lake.news import news_path, present_news_days
from marketpipe.markettime.calendar import new_york_date
from marketpipe.workflow.settings import WorkflowSettings

ARTICLES_PER_PAGE = 50  # Alpaca's largest news page


@dataclass(frozen=True)
class NewsJob:
    """One Snakemake job: the missing news days of one month."""

    month: str  # YYYY_MM
    days: tuple[dt.date, ...]  # the month's news days in the range
    missing: tuple[dt.date, ...]  # to fetch: not stored, or stored without a symbol's news
    incomplete: tuple[dt.date, ...] = ()  # of those, stored ones (their files exist)

    @property
    def name(self) -> str:
        """A readable label, e.g. ``news_2024_01``."""
        return f"news_{self.month}"

    def marker(self, markers_dir: Path | str, run_id: str) -> str:
        """The job's output when the lake is on S3 (see ``FetchJob.marker``)."""
        return str(Path(markers_dir) / "jobs" / run_id / f"{self.name}.done")

    def outputs(self, data_dir: Path | str) -> list[str]:
        """Every news file of the month's days (present ones stay)."""
        return [str(news_path(data_dir, day)) for day in self.days]

    def targets(self, data_dir: Path | str) -> list[str]:
        """The missing days' files (so ``snakemake -n`` names each one); days stored
        without a symbol's news are scheduled by the job's marker instead (see
        ``workflow/rules/common.smk``), their files being there."""
        return [str(news_path(data_dir, day)) for day in self.missing if day not in self.incomplete]


def news_jobs(
    days: Sequence[dt.date], covered: set[dt.date], stored: set[dt.date] | None = None
) -> list[NewsJob]:
    """One job per month of ``days`` with a day not ``covered`` (``stored``: the days with a
    file, covered or not)."""
    jobs = []
    for (year, month), group in itertools.groupby(days, key=lambda day: (day.year, day.month)):
        month_days = tuple(group)
        missing = tuple(day for day in month_days if day not in covered)
        incomplete = tuple(day for day in missing if stored is not None and day in stored)
        if missing:
            jobs.append(NewsJob(f"{year:04d}_{month:02d}", month_days, missing, incomplete))
    return jobs


def covered_news_days(settings: WorkflowSettings, present: set[dt.date]) -> set[dt.date]:
    """Of the ``present`` news days, those complete for every configured symbol, by the
    ledger's record of whose news each holds (a file the ledger does not know yet counts as
    its run wrote it; recording it reads whose news it holds)."""
    if not state_path(settings.state_dir).exists():
        return present
    with CheckpointStore(settings.state_dir) as store:
        entries = store.news_entries()
    symbols = settings.config.symbols
    return {day for day in present if day not in entries or entries[day].covers(symbols)}


def pending_news_jobs(settings: WorkflowSettings) -> list[NewsJob]:
    """The news jobs a run now would start (none when news is not fetched): the days not
    stored, or stored before a configured symbol was added."""
    if not settings.fetches_news or not settings.news_days:
        return []
    present = present_news_days(settings.lake)
    return news_jobs(settings.news_days, covered_news_days(settings, present), present)


def news_marker(settings: WorkflowSettings) -> Path:
    """The file saying the recent news was re-read on the run's New York date."""
    day = new_york_date(settings.now)
    return settings.markers_dir / "news" / f"rechecked-{day}.json"


def news_recheck_due(settings: WorkflowSettings) -> bool:
    """Whether a run now would re-read recent news days."""
    return (
        settings.fetches_news
        and settings.config.news.recheck_days > 0
        and bool(settings.news_days)
        and not news_marker(settings).exists()
    )


def recheck_days(
    settings: WorkflowSettings, entries: dict[dt.date, NewsEntry], fresh: Collection[dt.date]
) -> list[dt.date]:
    """The stored days to re-read: the last ``recheck_days`` news days, but not the ``fresh``
    ones this run's news jobs fetch (as recent as a re-read would be)."""
    count = settings.config.news.recheck_days
    window = settings.news_days[-count:] if count else []
    return [day for day in window if day in entries and day not in fresh]


def stored_news(settings: WorkflowSettings) -> dict[dt.date, NewsEntry]:
    """The ledger's news days (none before the first run)."""
    if not state_path(settings.state_dir).exists():
        return {}
    with CheckpointStore(settings.state_dir) as store:
        return store.news_entries()
