"""Keeping the lake's news: fetch missing days, re-read recent ones, record every file.

A day's file is written once the day is over (final, by the caller's plan) from one request
stream per run of consecutive missing days, for every configured symbol at once (an article
naming several is one row), and records whose news it is complete for: a symbol added later
makes the days stored before it due again. Each file is written before its ledger row; a
file whose row a crash prevented is adopted by :func:`marketpipe.lake.news.adopt_unrecorded_news`
(its bytes are complete: writes are atomic).

Whether the vendor's ``start``/``end`` select articles by ``created_at`` or by
``updated_at`` is not documented, so either is safe here: an article is stored in the day of
its ``created_at`` whichever window returned it (merged into that day's file, in its latest
version; never dropped), and the recheck asks for the articles of its recent window, which
under either reading brings the recently updated ones. Articles are merged, never removed: a
day's file only gains articles or newer versions, and a change is recorded in the ledger's
history with its reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa

from marketpipe.connectors.models import NEWS_SCHEMA
from marketpipe.connectors.news import NewsClient, NewsQuery, RejectedArticle
from marketpipe.connectors.polygon_news import PolygonNewsClient
from marketpipe.foundation.files import exclusive
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
    sync: NewsSync, first: dt.date, last: dt.date
) -> tuple[dict[dt.date, pa.Table], list[RejectedArticle], int]:
    """The articles of the window ``first``..``last`` (New York days) grouped by the day of
    their ``created_at`` (which may lie outside the window), the refused records, and how
    many articles came."""
    # Up to the next day's midnight: no sub-second gap at the end (articles created at the
    # very midnight belong to the next day, whose own window asks for them).
    start, end = new_york_midnight(first), new_york_midnight(last + dt.timedelta(days=1))
    query = NewsQuery(
        symbols=sync.symbols, start=start, end=end, include_content=sync.include_content
    )
    before = len(sync.client.rejected)
    table = pa.concat_tables([NEWS_SCHEMA.empty_table(), *sync.client.fetch_batch(query)])
    return split_by_day(table), sync.client.rejected[before:], table.num_rows


def _record_day(record: RejectedArticle, fallback: dt.date) -> dt.date:
    """The New York day a refused record claims to belong to, else ``fallback``."""
    try:
        created = dt.datetime.fromisoformat(str(orjson.loads(record.record)["created_at"]))
        return new_york_date(created)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return fallback


@dataclass(frozen=True)
class NewsSync:
    """What a news job stores with: the vendor's client, the lake and its ledger, which
    symbols' news, whether with bodies, the run it belongs to, and the lake's first and last
    day (an article created outside them is not the lake's)."""

    client: NewsClient | PolygonNewsClient
    lake: LakeStore
    store: CheckpointStore
    symbols: tuple[str, ...]
    include_content: bool
    run_id: str
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    # Taken around each day's read-merge-write: news jobs and the recheck run at once, and
    # an article of another day may land in a day another job is writing.
    lock_path: Path | None = None

    def fetch_days(self, days: Sequence[dt.date]) -> NewsReport:
        """Fetch and store ``days`` (final New York days): one stream per run of them; each
        day's file is then complete for :attr:`symbols`."""
        report = NewsReport()
        for run in consecutive_runs(days):
            fetched, rejected, received = _fetch(self, run[0], run[-1])
            report.articles += received
            refused = self._keep_rejected(rejected, run, report)
            for day in run:
                self._store(day, fetched.pop(day, None), True, refused.get(day, 0), report)
                report.days.append(day)
            self._store_elsewhere(fetched, refused, report)
        return report

    def recheck_days(self, days: Sequence[dt.date], until: dt.date | None = None) -> NewsReport:
        """Ask again for the articles of stored ``days`` in one window from the first of them
        to ``until`` (default: the last of them): articles created or updated since, which
        the vendor may select either way, each stored in its own day; a day whose articles
        changed is replaced, with the reason."""
        report = NewsReport()
        if not days:
            return report
        ordered = sorted(days)
        last = max(ordered[-1], until or ordered[-1])
        fetched, rejected, received = _fetch(self, ordered[0], last)
        report.articles += received
        refused = self._keep_rejected(rejected, ordered, report)
        for day in ordered:
            if self._store(day, fetched.pop(day, None), True, refused.get(day, 0), report):
                report.days.append(day)
        self._store_elsewhere(fetched, refused, report)
        return report

    def _keep_rejected(
        self, rejected: Sequence[RejectedArticle], days: Sequence[dt.date], report: NewsReport
    ) -> dict[dt.date, int]:
        """Keep refused records apart by the day they claim (else the window's first day),
        count and report them; how many each day had."""
        by_day: dict[dt.date, list[RejectedArticle]] = {}
        for record in rejected:
            by_day.setdefault(_record_day(record, days[0]), []).append(record)
        for day, refused in sorted(by_day.items()):
            publish_rejected(self.lake, day, refused)
            logger.warning(
                "news %s: %d record(s) refused, kept apart: %s",
                day,
                len(refused),
                refused[0].reason,
                extra={"event": "news_rejected", "day": day.isoformat()},
            )
        report.rejected += len(rejected)
        return {day: len(refused) for day, refused in by_day.items()}

    def _store_elsewhere(
        self, fetched: dict[dt.date, pa.Table], refused: dict[dt.date, int], report: NewsReport
    ) -> None:
        """Articles the window returned that were created on other days (a window that
        selects by ``updated_at``): merged into their own day's file. A day not stored yet
        keeps them in a file complete for no symbol, so it is still fetched in full."""
        for day, articles in sorted(fetched.items()):
            outside = (self.first_day is not None and day < self.first_day) or (
                self.last_day is not None and day > self.last_day
            )
            if outside:
                continue  # outside the lake's range: not the lake's news
            if self._store(day, articles, False, refused.get(day, 0), report):
                report.days.append(day)

    def _store(
        self,
        day: dt.date,
        fetched: pa.Table | None,
        complete: bool,
        rejected: int,
        report: NewsReport,
    ) -> bool:
        """Merge ``fetched`` into ``day``'s file (a new version of an article replaces the
        older one; no article is dropped), complete for :attr:`symbols` if ``complete``;
        write and record it if anything changed (``rejected``: the day's refused records).
        Whether it did."""
        with exclusive(self.lock_path) if self.lock_path is not None else nullcontext():
            try:
                stored = stored_news_file(self.lake, day)
            except FileNotFoundError:
                stored = None
            parts = [NEWS_SCHEMA.empty_table()]
            parts += [stored.articles] if stored is not None else []
            parts += [fetched] if fetched is not None else []
            merged = pa.concat_tables(parts)
            had = stored.symbols if stored is not None else ()
            covered = tuple(sorted({*had, *(self.symbols if complete else ())}))
            current = stored.sha256 if stored is not None else None
            written, _ = publish_news(self.lake, day, merged, covered, current)
            recorded = self.store.news_entry(day)
            entry = NewsEntry(day, written.rows, written.sha256, rejected, self.run_id, covered)
            unchanged = recorded is not None and recorded.sha256 == entry.sha256
            if unchanged and recorded.symbols == entry.symbols:
                return False
            old = stored.articles if stored is not None else NEWS_SCHEMA.empty_table()
            changed = _changed_articles(old, latest_versions(merged))
            added = sorted(set(covered) - set(recorded.symbols)) if recorded is not None else []
            reason = f"{changed} article(s) new or updated at the vendor"
            if added:
                reason += f"; news of {', '.join(added)} added"
            self.store.record_news(entry, replaced=recorded, changed=changed, reason=reason)
            if recorded is not None and recorded.sha256 != entry.sha256:
                report.replaced.append(day)
            return True


def _changed_articles(old: pa.Table, new: pa.Table) -> int:
    """Articles added, removed or in another version between two days' files."""
    before = dict(zip(old["id"].to_pylist(), old["updated_at"].to_pylist(), strict=True))
    after = dict(zip(new["id"].to_pylist(), new["updated_at"].to_pylist(), strict=True))
    return sum(1 for key in before.keys() | after.keys() if before.get(key) != after.get(key))
