"""Keeping the lake's news: fetch missing days, re-read recent ones, record every file.

A day's file is written once the day is over (final, by the caller's plan) from one request
stream per run of consecutive missing days, for every configured symbol at once (an article
naming several is one row). Each file is written before its ledger row; a file whose row a
crash prevented is adopted by :func:`marketpipe.lake.news.adopt_unrecorded_news` (its bytes
are complete: writes are atomic). The recheck re-asks about recent stored days and replaces
a day only when its bytes change, recording the old and new versions in the ledger's history.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from marketpipe.connectors.models import NEWS_SCHEMA
from marketpipe.connectors.news import NewsClient, NewsQuery, RejectedArticle
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.ledger_rows import NewsEntry
from marketpipe.lake.news import (
    latest_versions,
    publish_news,
    publish_rejected,
    split_by_day,
    stored_news_file,
)
from marketpipe.lake.objects import LakeStore
from marketpipe.markettime.calendar import new_york_date, new_york_midnight

logger = logging.getLogger(__name__)


@dataclass
class NewsReport:
    """What one news job did."""

    days: list[dt.date] = field(default_factory=list)  # days written (new or replaced)
    articles: int = 0  # articles received
    rejected: int = 0  # records refused, kept apart
    replaced: list[dt.date] = field(default_factory=list)  # stored days whose articles changed


def consecutive_runs(days: Sequence[dt.date]) -> list[list[dt.date]]:
    """Sorted ``days`` split into runs of consecutive calendar days."""
    runs: list[list[dt.date]] = []
    for day in sorted(days):
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _fetch(
    sync: NewsSync, days: list[dt.date]
) -> tuple[dict[dt.date, pa.Table], dict[dt.date, list[RejectedArticle]], int]:
    """Articles of one run of days grouped by day, the refused records by day, and the count."""
    # Up to the next day's midnight: no sub-second gap at the end (articles created at the
    # very midnight belong to the next day, whose own run stores them).
    start, end = new_york_midnight(days[0]), new_york_midnight(days[-1] + dt.timedelta(days=1))
    query = NewsQuery(
        symbols=sync.symbols, start=start, end=end, include_content=sync.include_content
    )
    before = len(sync.client.rejected)
    table = pa.concat_tables([NEWS_SCHEMA.empty_table(), *sync.client.fetch_batch(query)])
    by_day = split_by_day(table)
    rejected: dict[dt.date, list[RejectedArticle]] = {}
    for record in sync.client.rejected[before:]:
        rejected.setdefault(_record_day(record, days[0]), []).append(record)
    return (
        {day: by_day.get(day, NEWS_SCHEMA.empty_table()) for day in days},
        rejected,
        table.num_rows,
    )


def _record_day(record: RejectedArticle, fallback: dt.date) -> dt.date:
    """The New York day a refused record claims to belong to, else the run's first day."""
    try:
        created = dt.datetime.fromisoformat(str(orjson.loads(record.record)["created_at"]))
        return new_york_date(created)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return fallback


@dataclass(frozen=True)
class NewsSync:
    """What a news job stores with: the vendor's client, the lake and its ledger, which
    symbols' news, whether with bodies, and the run it belongs to."""

    client: NewsClient
    lake: LakeStore
    store: CheckpointStore
    symbols: tuple[str, ...]
    include_content: bool
    run_id: str

    def fetch_days(self, days: Sequence[dt.date]) -> NewsReport:
        """Fetch and store ``days`` (final New York days): one stream per run of them."""
        report = NewsReport()
        for run in consecutive_runs(days):
            tables, rejected, received = _fetch(self, run)
            report.articles += received
            for day in run:
                refused = rejected.get(day, [])
                if refused:
                    publish_rejected(self.lake, day, refused)
                    logger.warning(
                        "news %s: %d record(s) refused, kept apart: %s",
                        day,
                        len(refused),
                        refused[0].reason,
                        extra={"event": "news_rejected", "day": day.isoformat()},
                    )
                written, _ = publish_news(self.lake, day, tables[day])
                entry = NewsEntry(day, written.rows, written.sha256, len(refused), self.run_id)
                self.store.record_news(entry)
                report.days.append(day)
                report.rejected += len(refused)
        return report

    def recheck_days(self, days: Sequence[dt.date]) -> NewsReport:
        """Ask again about stored ``days``; replace a day whose articles changed (a later
        ``updated_at``, a new article), recording both versions and the reason."""
        report = NewsReport()
        entries = self.store.news_entries()
        for run in consecutive_runs(days):
            tables, _, received = _fetch(self, run)
            report.articles += received
            for day in run:
                if self._replace(day, tables[day], entries.get(day)):
                    report.days.append(day)
                    report.replaced.append(day)
        return report

    def _replace(self, day: dt.date, fetched: pa.Table, recorded: NewsEntry | None) -> bool:
        """Write ``day``'s file if its bytes change and record it if the ledger differs
        (file first: a crash in between is repaired by the next recheck)."""
        current, old = stored_news_file(self.lake, day)
        written, _ = publish_news(self.lake, day, fetched, current)
        if recorded is not None and recorded.sha256 == written.sha256:
            return False
        changed = _changed_articles(old, latest_versions(fetched))
        self.store.record_news(
            NewsEntry(day, written.rows, written.sha256, 0, self.run_id),
            replaced=recorded,
            changed=changed,
            reason=f"{changed} article(s) new or updated at the vendor",
        )
        return True


def _changed_articles(old: pa.Table, new: pa.Table) -> int:
    """Articles added, removed or in another version between two days' files."""
    before = dict(zip(old["id"].to_pylist(), old["updated_at"].to_pylist(), strict=True))
    after = dict(zip(new["id"].to_pylist(), new["updated_at"].to_pylist(), strict=True))
    return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))
