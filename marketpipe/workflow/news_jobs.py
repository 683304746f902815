"""The workflow's news jobs: store missing news days, and re-read the recent ones once a day."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from marketpipe.connectors import ConnectorError
from marketpipe.connectors.errors import is_permanent
from marketpipe.foundation.files import write_atomically
from marketpipe.ingest.news import NewsReport, NewsSync
from marketpipe.lake.fencing import check_fence
from marketpipe.lake.ledger import STATE_DIR, CheckpointStore
from marketpipe.markettime.calendar import new_york_date
from marketpipe.markettime.timeutil import sorted_days
from marketpipe.observability.logs import current_run_id, job_context, json_log_file, log_event
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.workflow.jobs import (
    check_job_record,
    fail_job,
    record_job,
    reported_error_first,
    write_marker,
)
from marketpipe.workflow.news_planning import recheck_days
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.vendors import open_clients

logger = logging.getLogger(__name__)
NEWS_LOCK = "news.lock"  # one day's read-merge-write at a time (see NewsSync.lock_path)
NewsWork = Callable[[NewsSync], NewsReport]


def _run_news_job(
    settings: WorkflowSettings, job: str, log_path: Path | str, work: NewsWork
) -> NewsReport:
    """Run ``work`` with the news client and the ledger; record the job; raise FetchFailed
    with the vendor's reason when it fails."""
    recorder = MetricsRecorder()
    started = time.time()
    report, error, permanent = NewsReport(), None, False
    with json_log_file(log_path), job_context(symbol="news", month=job):
        log_event(logger, "news.start", f"{job}: news of {len(settings.config.symbols)} symbol(s)")
        with CheckpointStore(settings.state_dir) as store:
            try:
                check_fence(job)
                with open_clients(settings, recorder) as clients:
                    if clients.news is None:
                        raise ValueError(
                            f"vendor {settings.config.vendor}: news is not fetched from this "
                            "vendor; set news.fetch: false"
                        )
                    sync = NewsSync(
                        clients.news,
                        settings.lake,
                        store,
                        tuple(settings.config.symbols),
                        settings.config.news.include_content,
                        current_run_id(),
                        first_day=settings.config.start,
                        last_day=settings.news_days[-1] if settings.news_days else None,
                        lock_path=settings.state_dir / STATE_DIR / NEWS_LOCK,
                    )
                    report = work(sync)
            except (ConnectorError, ValueError) as exc:
                error = f"{job} failed: {exc}"
                permanent = is_permanent(exc)
            finally:
                record = check_job_record(
                    job,
                    "news",
                    error,
                    permanent,
                    started,
                    recorder,
                    rows=report.articles,
                    rejected_rows=report.rejected,
                )
                with reported_error_first(job):
                    record_job(store, settings, record)
        message = (
            f"{job}: {report.articles} article(s) received, {len(report.days)} day file(s) "
            f"written ({len(report.replaced)} replaced), {report.rejected} record(s) refused"
        )
        log_event(logger, "news.end", message, status="failed" if error else "ok")
        if error:
            fail_job(error, permanent)
    return report


def fetch_news(
    settings: WorkflowSettings,
    days: Sequence[dt.date | str],
    log_path: Path | str,
    done_marker: Path | str | None = None,
) -> NewsReport:
    """Store the news of ``days`` (final, missing New York days); ``done_marker`` when done."""
    wanted = sorted_days(days)
    label = f"news {wanted[0]}..{wanted[-1]}"

    def work(sync: NewsSync) -> NewsReport:
        return sync.fetch_days(wanted)

    report = _run_news_job(settings, label, log_path, work)
    if done_marker is not None:
        write_atomically(Path(done_marker), f"{label}\n".encode())
    return report


def recheck_until(settings: WorkflowSettings, days: Sequence[dt.date]) -> dt.date:
    """The last day of the recheck's window: up to the latest final calendar day (so that
    articles updated since, if the vendor selects by update time, come too), but no more
    than ``news.recheck_days`` past the last day rechecked (a range that ended long ago)."""
    latest_final = new_york_date(settings.now - settings.finality.settle) - dt.timedelta(days=1)
    reach = max(days) + dt.timedelta(days=settings.config.news.recheck_days)
    return max(max(days), min(latest_final, reach))


def recheck_news(
    settings: WorkflowSettings,
    marker: Path | str,
    log_path: Path | str,
    fresh_days: Sequence[dt.date | str] = (),
) -> None:
    """Re-read the last ``news.recheck_days`` stored days (but not ``fresh_days``, which this
    run's news jobs fetch) and replace those that changed; write ``marker`` (what was done,
    as JSON) so the next run of the day skips it."""
    checked: list[dt.date] = []
    fresh = set(sorted_days(fresh_days))

    def work(sync: NewsSync) -> NewsReport:
        checked.extend(recheck_days(settings, sync.store.news_entries(), fresh))
        return (
            sync.recheck_days(checked, recheck_until(settings, checked))
            if checked
            else NewsReport()
        )

    report = _run_news_job(settings, "news recheck", log_path, work)
    summary = {
        "checked_on": new_york_date(settings.now).isoformat(),
        "days": [day.isoformat() for day in checked],
        "replaced": [day.isoformat() for day in report.replaced],
    }
    write_marker(marker, summary)
