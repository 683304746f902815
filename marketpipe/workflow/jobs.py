"""The functions Snakemake rules and hooks call; each is usable (and tested) without Snakemake."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from marketpipe.connectors import ConnectorError
from marketpipe.connectors.errors import is_permanent
from marketpipe.foundation.files import write_atomically
from marketpipe.ingest.actions import ActionsReport, sync_corporate_actions
from marketpipe.ingest.bars import (
    IngestReport,
    SymbolsFailed,
)
from marketpipe.lake.fencing import LeaseLost, check_fence
from marketpipe.lake.identity import claim_identity
from marketpipe.lake.ledger import CheckpointStore, JobRecord
from marketpipe.markettime.calendar import new_york_date
from marketpipe.markettime.timeutil import sorted_days
from marketpipe.observability.logs import (
    current_run_id,
    job_context,
    json_log_file,
    log_event,
)
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.workflow.console import job_failed
from marketpipe.workflow.planning import symbols_label
from marketpipe.workflow.report import make_report
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.streams import stream_settings
from marketpipe.workflow.vendors import open_clients

logger = logging.getLogger(__name__)


class FetchFailed(RuntimeError):
    """A job could not fetch some symbols' bars; the message says which and why."""


def present_partition_count(store: CheckpointStore, settings: WorkflowSettings) -> int:
    """How many partitions of the configured range the ledger records."""
    config = settings.config
    return store.count_partitions(config.symbols, config.start, settings.end)


def fetch_partitions(
    settings: WorkflowSettings,
    symbols: Sequence[str],
    days: Sequence[dt.date | str],
    log_path: Path | str,
    done_marker: Path | str | None = None,
) -> IngestReport:
    """Fetch and publish the missing partitions of ``symbols`` among ``days``; log JSON to
    ``log_path``; write ``done_marker`` (if given) when every one is published.

    The job's outcome and per-endpoint metrics are stored with the checkpoints under the
    run id. Raises :class:`FetchFailed` naming each failed symbol, the days and the vendor's
    error, after publishing every symbol that could be fetched.
    """
    wanted = sorted_days(days)
    symbols = tuple(sorted(symbols))
    month = wanted[0].strftime("%Y-%m")
    span = f"{wanted[0]}..{wanted[-1]}"
    label = f"{symbols_label(symbols)} {span}"
    recorder = MetricsRecorder()
    report = IngestReport(symbols=symbols)
    started = time.time()
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month=month):
        log_event(logger, "job.start", f"fetching {label}", planned=len(wanted) * len(symbols))
        with CheckpointStore(settings.state_dir) as store:
            error: str | None = None
            permanent = False
            failed = symbols
            token = f"{current_run_id()}/{label}"
            try:
                check_fence(f"fetching {label}")
                store.claim_settings(settings.lake_settings())
                claim_identity(settings.lake, settings.identity)
                store.open_job(token, symbols, wanted)
                with open_clients(settings, recorder) as clients:
                    clients.ingest_bars(
                        store,
                        settings.lake,
                        symbols,
                        wanted,
                        stream_settings(settings, clients.assets, set(symbols)),
                        report,
                        now=settings.now,
                        adopt=settings.lake.is_local,
                    )
            except (ConnectorError, ValueError) as exc:
                permanent = job_error_is_permanent(exc)
                cause = str(exc)
                if isinstance(exc, SymbolsFailed):
                    failed = tuple(exc.errors)
                    label = f"{symbols_label(failed)} {span}"
                    cause = exc.common_cause or cause
                error = f"fetching {label} failed: {cause}"
                logger.error(error, extra={"event": "job.failed"})
                raise FetchFailed(error) from None
            except BaseException as exc:
                error = f"fetching {label} failed: {type(exc).__name__}: {exc}"
                logger.error(error, extra={"event": "job.failed"})
                raise
            finally:
                job = _JobOutcome(
                    symbols, failed if error else (), month, started, error, permanent
                )
                with reported_error_first(label):
                    _finish_job(store, settings, job, report, recorder)
                    store.close_job(token)
    if done_marker is not None:
        write_atomically(Path(done_marker), f"{label}\n".encode())
    return report


@dataclass(frozen=True)
class _JobOutcome:
    """Who a job was for and how it ended."""

    symbols: tuple[str, ...]
    failed: tuple[str, ...]
    month: str
    started: float
    error: str | None
    permanent: bool = False

    @property
    def label(self) -> str:
        """``AAPL..SPY (3 symbols)/2024-01``."""
        return f"{symbols_label(self.symbols)} {self.month}"


@contextmanager
def reported_error_first(job: str) -> Iterator[None]:
    """Around a job's closing ledger write in ``finally``: while the job is failing already,
    a lost lease during the write is logged, not raised, so the job's own error is the one
    reported (the record is not written: a run that lost its lease writes nothing more)."""
    failing = sys.exc_info()[1]
    try:
        yield
    except LeaseLost as lost:
        if failing is None:
            raise
        logger.warning(
            "%s: its record was not written (%s); the job's own error follows",
            job,
            lost,
            extra={"event": "job.record_skipped"},
        )


def _finish_job(
    store: CheckpointStore,
    settings: WorkflowSettings,
    job: _JobOutcome,
    report: IngestReport,
    recorder: MetricsRecorder,
) -> None:
    status = "failed" if job.error else "ok"
    metrics = {key: stats.to_dict() for key, stats in recorder.snapshot().items()}
    record_job(
        store,
        settings,
        JobRecord(
            run_id=current_run_id(),
            job=job.label,
            symbol=",".join(job.failed or job.symbols),
            status=status,
            error=job.error,
            planned=report.planned_days,
            missing=report.missing_days,
            published=len(report.published),
            rows=report.rows,
            rejected_rows=report.rejected_rows,
            requests=sum(stats["requests"] for stats in metrics.values()),
            started_at=job.started,
            finished_at=time.time(),
            metrics=metrics,
            flagged_rows=report.flagged_rows,
            permanent=job.permanent,
        ),
    )
    present, planned = present_partition_count(store, settings), settings.planned_partitions
    log_event(
        logger,
        "job.end",
        f"{job.label}: {report.missing_days} of {report.planned_days} partitions were missing;"
        f" {len(report.published)} published with {report.requests} page request(s)"
        + (f" and {report.files_read} flat file(s)" if report.files_read else "")
        + f", {report.rejected_rows} row(s) quarantined, {report.flagged_rows} flagged",
        status=status,
        missing=report.missing_days,
        published=len(report.published),
        rows=report.rows,
        rejected=report.rejected_rows,
        flagged=report.flagged_rows,
        requests=report.requests,
        files_read=report.files_read,
        seconds=round(time.time() - job.started, 3),
    )
    log_event(
        logger, "progress", f"{present}/{planned} partitions done", done=present, total=planned
    )
    if job.error:
        job_failed(job.error, job.permanent)


def fetch_corporate_actions(
    settings: WorkflowSettings, marker: Path | str, log_path: Path | str
) -> ActionsReport:
    """Bring the lake's corporate actions of the configured symbols up to date.

    Writes ``marker`` (what was done, as JSON) on success; raises :class:`FetchFailed`
    naming each symbol whose actions could not be fetched, after storing the others'.
    """
    symbols = tuple(settings.config.symbols)
    recorder = MetricsRecorder()
    started = time.time()
    error: str | None = None
    permanent = False
    report = ActionsReport(symbols)
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month="actions"):
        log_event(logger, "actions.start", f"corporate actions of {symbols_label(symbols)}")
        try:
            with open_clients(settings, recorder) as clients:
                report = sync_corporate_actions(
                    clients.corporate_actions,
                    clients.bars,
                    settings.state_dir,
                    settings.lake,
                    symbols,
                    settings.config.start,
                    settings.now,
                    recheck_days=settings.config.corporate_actions.recheck_days,
                    settle=settings.finality.settle,
                    run_id=current_run_id(),
                )
            if report.failed:
                by_reason: dict[str, list[str]] = {}
                for symbol, why in report.failed.items():
                    by_reason.setdefault(why, []).append(symbol)
                if len(by_reason) == 1:
                    error = f"corporate actions of {symbols_label(tuple(report.failed))} failed: "
                    error += next(iter(by_reason))
                else:
                    reasons = "; ".join(
                        f"{', '.join(names)}: {why}" for why, names in by_reason.items()
                    )
                    error = f"corporate actions could not be fetched for {reasons}"
                permanent = set(report.failed) <= report.permanent
        except (ConnectorError, ValueError) as exc:
            error = f"corporate actions of {symbols_label(symbols)} failed: {exc}"
            permanent = job_error_is_permanent(exc)
        pending = report.dividends_pending
        message = (
            f"corporate actions: {report.fetched} record(s) received, "
            f"{len(report.written)} file(s) changed"
        )
        if pending:
            message += f", {pending} dividend(s) wait for the close before their ex-date"
        log_event(
            logger,
            "actions.end",
            message,
            written=len(report.written),
            fetched=report.fetched,
            status="failed" if error else "ok",
        )
        record = check_job_record(
            "corporate_actions",
            ",".join(report.failed or symbols),
            error,
            permanent,
            started,
            recorder,
        )
        with CheckpointStore(settings.state_dir) as store:
            store.record_job(record)
        if error:
            fail_job(error, permanent)
    summary = {
        "checked_on": new_york_date(settings.now).isoformat(),
        "fetched": report.fetched,
        "changed": report.written,
        "dividends_pending": report.dividends_pending,
    }
    write_marker(marker, summary)
    return report


def check_job_record(
    job: str,
    symbol: str,
    error: str | None,
    permanent: bool,
    started: float,
    recorder: MetricsRecorder,
    *,
    rows: int = 0,
    rejected_rows: int = 0,
) -> JobRecord:
    """The ledger's record of a job that publishes no bar partitions (corporate actions, the
    security master, news): its outcome, requests and metrics."""
    metrics = {key: stats.to_dict() for key, stats in recorder.snapshot().items()}
    return JobRecord(
        run_id=current_run_id(),
        job=job,
        symbol=symbol,
        status="failed" if error else "ok",
        error=error,
        planned=0,
        missing=0,
        published=0,
        rows=rows,
        rejected_rows=rejected_rows,
        requests=sum(stats["requests"] for stats in metrics.values()),
        started_at=started,
        finished_at=time.time(),
        metrics=metrics,
        permanent=permanent,
    )


def fail_job(error: str, permanent: bool) -> None:
    """Say why a job failed (console and log) and raise :class:`FetchFailed`."""
    job_failed(error, permanent)
    logger.error(error, extra={"event": "job.failed"})
    raise FetchFailed(error)


def write_marker(marker: Path | str, summary: dict[str, object]) -> None:
    """Publish a job's marker file: what it did, as JSON."""
    write_atomically(Path(marker), (json.dumps(summary, indent=2) + "\n").encode())


JOB_RECORDS = "_state/job-records"


def record_job(store: CheckpointStore, settings: WorkflowSettings, record: JobRecord) -> None:
    """Store what a job did in the ledger; for an S3 lake also in the bucket, where the
    controller collects it at the end of the run (the job's own ledger may be private)."""
    store.record_job(record)
    if not settings.lake.is_local:
        name = hashlib.sha256(record.job.encode()).hexdigest()[:16]
        key = f"{JOB_RECORDS}/{record.run_id}/{name}.json"
        settings.lake.put(key, json.dumps(dataclasses.asdict(record), sort_keys=True).encode())


def collect_job_records(store: CheckpointStore, settings: WorkflowSettings) -> int:
    """Fold the job records jobs left in the bucket into the ledger: this run's, and those
    of a killed controller's jobs that ended after it."""
    keys = settings.lake.list(JOB_RECORDS)
    for key in keys:
        store.record_job(JobRecord(**json.loads(settings.lake.get(key))))
        settings.lake.delete(key)
    return len(keys)


def write_coverage_report(
    settings: WorkflowSettings, output_dir: Path | str, log_path: Path | str
) -> None:
    """Refresh the coverage PNG and HTML page, including this run's numbers so far."""
    with json_log_file(log_path):
        png, page = make_report(settings, Path(output_dir), run_id=current_run_id())
        log_event(logger, "report.written", f"wrote {png} and {page}", png=str(png), html=str(page))


def job_error_is_permanent(error: BaseException) -> bool:
    """Whether a person must act before the job can succeed (every symbol's error, when
    symbols failed one by one; see :func:`marketpipe.connectors.errors.is_permanent`)."""
    if isinstance(error, SymbolsFailed):
        return all(is_permanent(cause) for cause in error.errors.values())
    return is_permanent(error)
