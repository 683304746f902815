"""The functions Snakemake rules and hooks call; each is usable (and tested) without Snakemake."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from marketpipe.connectors import ConnectorError
from marketpipe.foundation.files import write_atomically
from marketpipe.ingest.actions import ActionsReport, sync_corporate_actions
from marketpipe.ingest.bars import (
    IngestReport,
    StreamSettings,
    SymbolsFailed,
    ingest_days,
    reconcile,
)
from marketpipe.lake.ledger import CheckpointStore, JobRecord, state_path
from marketpipe.lake.reindex import reindex
from marketpipe.lake.run_lock import RunLock
from marketpipe.lake.storage import describe_partitions
from marketpipe.markettime.calendar import new_york_date
from marketpipe.markettime.finality import describe_final_at
from marketpipe.observability.alerts import AlertPolicy, send_alert, webhook_url
from marketpipe.observability.logs import current_run_id, job_context, json_log_file, log_event
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.observability.summary import (
    build_run_summary,
    format_run_summary,
    write_run_summary,
)
from marketpipe.workflow.planning import (
    FetchJob,
    delete_run_plan,
    describe_not_final,
    run_plan_location,
    symbols_label,
)
from marketpipe.workflow.report import make_report
from marketpipe.workflow.settings import STATE_DIR_VARIABLE, WorkflowSettings
from marketpipe.workflow.vendors import open_client, open_clients

logger = logging.getLogger(__name__)


class FetchFailed(RuntimeError):
    """A job could not fetch some symbols' bars; the message says which and why."""


def configure_workflow_process() -> None:
    """Process-wide memory settings for the Snakemake process whose threads run the jobs.

    Jobs and their read-ahead threads come and go, and per-thread allocator caches kept
    what they freed: the workflow's peak RSS grew with the number of jobs and varied by
    ~60 MB between identical runs. Arrow uses the system allocator, and glibc shares two
    malloc arenas among all threads (measured: same speed, steady and lower peak).
    ``ARROW_DEFAULT_MEMORY_POOL`` and ``MALLOC_ARENA_MAX`` still win when set.
    """
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    if not os.environ.get("MALLOC_ARENA_MAX"):
        _limit_malloc_arenas(2)


def _limit_malloc_arenas(count: int) -> None:
    """glibc's ``mallopt(M_ARENA_MAX, count)``; a no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8  # from glibc's malloc.h
    mallopt(m_arena_max, count)


def use_private_state(settings: WorkflowSettings) -> None:
    """In a job process of an S3 lake, keep state (ledger, logs) in a directory of its own.

    Such a job may run on a machine that shares no filesystem with the controller (and a
    shared one may not hold SQLite safely): it publishes to the bucket, and the controller
    rebuilds its ledger from the bucket at the end of the run. ``$MARKETPIPE_STATE_DIR``,
    when set (node-local scratch), is used as it is.
    """
    if settings.lake.is_local or os.environ.get(STATE_DIR_VARIABLE):
        return
    private = tempfile.mkdtemp(prefix="marketpipe-job-")
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    os.environ[STATE_DIR_VARIABLE] = private


def stream_settings(settings: WorkflowSettings) -> StreamSettings:
    """The provenance of the bars this configuration fetches."""
    return StreamSettings(
        vendor=settings.config.vendor,
        timeframe=settings.timeframe,
        feed=settings.config.alpaca.feed,
        adjustment=settings.config.alpaca.adjustment,
        settle=settings.finality.settle,
    )


def run_log_path(settings: WorkflowSettings) -> Path:
    """The workflow-level JSON log of this run."""
    return settings.data_dir / "_logs" / "runs" / f"{current_run_id()}.jsonl"


def _present_partitions(store: CheckpointStore, settings: WorkflowSettings) -> int:
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
    wanted = sorted(day if isinstance(day, dt.date) else dt.date.fromisoformat(day) for day in days)
    symbols = tuple(sorted(symbols))
    month = wanted[0].strftime("%Y-%m")
    span = f"{wanted[0]}..{wanted[-1]}"
    label = f"{symbols_label(symbols)} {span}"
    recorder = MetricsRecorder()
    report = IngestReport(symbols=symbols)
    started = time.time()
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month=month):
        log_event(logger, "job.start", f"fetching {label}", planned=len(wanted) * len(symbols))
        with CheckpointStore(settings.data_dir) as store:
            error: str | None = None
            failed = symbols
            token = f"{current_run_id()}/{label}"
            try:
                store.claim_settings(settings.lake_settings())
                store.open_job(token, symbols, wanted)
                with open_client(settings, recorder) as client:
                    ingest_days(
                        client,
                        store,
                        settings.lake,
                        symbols,
                        wanted,
                        stream_settings(settings),
                        report,
                        now=settings.now,
                        adopt=settings.lake.is_local,
                    )
            except (ConnectorError, ValueError) as exc:
                if isinstance(exc, SymbolsFailed):
                    failed = tuple(exc.errors)
                    label = f"{symbols_label(failed)} {span}"
                error = f"fetching {label} failed: {exc}"
                logger.error(error, extra={"event": "job.failed"})
                raise FetchFailed(error) from None
            except BaseException as exc:
                error = f"fetching {label} failed: {type(exc).__name__}: {exc}"
                logger.error(error, extra={"event": "job.failed"})
                raise
            finally:
                job = _JobOutcome(symbols, failed if error else (), month, started, error)
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

    @property
    def label(self) -> str:
        """``AAPL..SPY (3 symbols)/2024-01``."""
        return f"{symbols_label(self.symbols)} {self.month}"


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
        ),
    )
    present, planned = _present_partitions(store, settings), settings.planned_partitions
    log_event(
        logger,
        "job.end",
        f"{job.label}: {report.missing_days} of {report.planned_days} partitions were missing;"
        f" {len(report.published)} published with {report.requests} page request(s), "
        f"{report.rejected_rows} row(s) quarantined, {report.flagged_rows} flagged",
        status=status,
        missing=report.missing_days,
        published=len(report.published),
        rows=report.rows,
        rejected=report.rejected_rows,
        flagged=report.flagged_rows,
        requests=report.requests,
        seconds=round(time.time() - job.started, 3),
    )
    log_event(
        logger, "progress", f"{present}/{planned} partitions done", done=present, total=planned
    )
    failed = f" (FAILED: {symbols_label(job.failed)})" if job.error else ""
    print(
        f"[marketpipe] {job.label}: {len(report.published)} partition(s) published{failed}; "
        f"lake {present}/{planned} partitions done",
        file=sys.stderr,
        flush=True,
    )


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
    report = ActionsReport(symbols)
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month="actions"):
        log_event(logger, "actions.start", f"corporate actions of {symbols_label(symbols)}")
        try:
            with open_clients(settings, recorder) as clients:
                report = sync_corporate_actions(
                    clients.corporate_actions,
                    clients.bars,
                    settings.data_dir,
                    settings.lake,
                    symbols,
                    settings.config.start,
                    settings.now,
                    recheck_days=settings.config.corporate_actions.recheck_days,
                    settle=settings.finality.settle,
                    run_id=current_run_id(),
                )
            if report.failed:
                reasons = "; ".join(f"{symbol}: {why}" for symbol, why in report.failed.items())
                error = f"corporate actions could not be fetched for {reasons}"
        except (ConnectorError, ValueError) as exc:
            error = f"corporate actions of {symbols_label(symbols)} failed: {exc}"
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
        metrics = {key: stats.to_dict() for key, stats in recorder.snapshot().items()}
        with CheckpointStore(settings.data_dir) as store:
            store.record_job(
                JobRecord(
                    run_id=current_run_id(),
                    job="corporate_actions",
                    symbol=",".join(report.failed or symbols),
                    status="failed" if error else "ok",
                    error=error,
                    planned=0,
                    missing=0,
                    published=0,
                    rows=0,
                    rejected_rows=0,
                    requests=sum(stats["requests"] for stats in metrics.values()),
                    started_at=started,
                    finished_at=time.time(),
                    metrics=metrics,
                )
            )
        print(
            f"[marketpipe] {message}" + (f" (FAILED: {error})" if error else ""),
            file=sys.stderr,
            flush=True,
        )
        if error:
            logger.error(error, extra={"event": "job.failed"})
            raise FetchFailed(error)
    summary = {
        "checked_on": new_york_date(settings.now).isoformat(),
        "fetched": report.fetched,
        "changed": report.written,
        "dividends_pending": report.dividends_pending,
    }
    write_atomically(Path(marker), (json.dumps(summary, indent=2) + "\n").encode())
    return report


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
    """Fold the job records this run's jobs left in the bucket into the ledger."""
    prefix = f"{JOB_RECORDS}/{current_run_id()}"
    keys = settings.lake.list(prefix)
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


def recover_interrupted_jobs(settings: WorkflowSettings) -> int:
    """Reconcile the ledger of jobs a crash interrupted; return how many there were.

    A kill between writing a partition and recording it leaves a file the ledger does not
    know. Its job's month may look complete on disk, so no job would reconcile it again.
    """
    if not state_path(settings.data_dir).exists():
        return 0
    with CheckpointStore(settings.data_dir) as store:
        interrupted = store.open_jobs()
        for job, (symbols, days) in interrupted.items():
            for symbol in symbols:
                reconcile(store, settings.lake, symbol, days)
            store.close_job(job)
            log_event(logger, "job.recovered", f"reconciled the ledger of interrupted job {job}")
    return len(interrupted)


def run_scope_notes(settings: WorkflowSettings) -> list[str]:
    """What a run leaves out because it is not final yet, and why (empty when nothing is)."""
    pending = settings.pending_sessions
    config = settings.config
    if settings.final_sessions:
        if not pending:
            return []
        return [
            f"not fetched yet: {describe_not_final(pending, settings.finality)}; until then "
            "their bars can still change, and the first run after that fetches them"
        ]
    if not pending:
        return [
            f"nothing to fetch: no NYSE session is final between {config.start} and "
            f"{config.end} (end resolved to {settings.end})"
        ]
    first = pending[0]
    final_at = describe_final_at(settings.finality.final_at(first))
    return [
        f"nothing to fetch: no session of {config.start}..{config.end} is final yet; the "
        f"first, {first.date}, is final at {final_at} (bars of unfinished sessions can change)"
    ]


def adjustment_warning(settings: WorkflowSettings) -> str | None:
    """Why a lake of vendor-adjusted bars goes stale, and what to do instead (``None`` for a
    raw lake)."""
    adjustment = settings.config.alpaca.adjustment
    if adjustment == "raw":
        return None
    return (
        f"WARNING: alpaca.adjustment is {adjustment!r}: each partition keeps the adjustment the "
        "vendor knew on the day it was fetched, so the lake goes stale with the next split or "
        "dividend and mixes bases. Keep alpaca.adjustment: raw and adjust when reading: "
        "marketpipe.read_bars(..., adjustment='all') or marketpipe export --adjustment all"
    )


def announce_missing(settings: WorkflowSettings, jobs: Sequence[FetchJob]) -> None:
    """Name the partitions the run's jobs fetch, when Snakemake cannot (an S3 lake's jobs
    output marker files, so ``-n`` would show those)."""
    if settings.lake.is_local or not jobs:
        return
    missing = sorted(
        (group.symbol, day) for job in jobs for group in job.pending for day in group.missing
    )
    print(f"[marketpipe] missing: {describe_partitions(missing)}", file=sys.stderr, flush=True)


def announce_run_scope(settings: WorkflowSettings) -> None:
    """Print :func:`run_scope_notes` (and :func:`adjustment_warning`) for the person or
    scheduler running the workflow."""
    warning = adjustment_warning(settings)
    for line in [*run_scope_notes(settings), *([warning] if warning else [])]:
        print(f"[marketpipe] {line}", file=sys.stderr, flush=True)


_RUN_LOCKS: list[RunLock] = []  # held until this process ends


def hold_run_lock(settings: WorkflowSettings) -> None:
    """Take the lake's run lock for the rest of this process (Snakemake ``onstart``).

    Raises :class:`RunInProgress` when another live process writes the lake; a lock that
    ``marketpipe update`` took in this same process already covers the run.
    """
    lock = RunLock(settings.data_dir, "snakemake", settings.lake)
    lock.acquire()
    _RUN_LOCKS.append(lock)


def start_run(settings: WorkflowSettings) -> None:
    """Log the run's start and recover from a crashed run (Snakemake ``onstart``)."""
    with json_log_file(run_log_path(settings), this_thread_only=False, mode="a"):
        recover_interrupted_jobs(settings)
        log_event(
            logger,
            "run.start",
            f"run {current_run_id()} started",
            symbols=",".join(settings.config.symbols),
            start=settings.config.start.isoformat(),
            end=settings.end.isoformat(),
            vendor=settings.config.vendor,
            planned=settings.planned_partitions,
        )


def finish_run(settings: WorkflowSettings, status: str) -> dict[str, Any]:
    """Roll up, save and print the run summary (Snakemake ``onsuccess`` / ``onerror``).

    An S3 lake's jobs may have run on machines with ledgers of their own: the controller's
    ledger learns their partitions from the lake first (:func:`reindex`).
    """
    with CheckpointStore(settings.data_dir) as store:
        if not settings.lake.is_local:
            reindex(store, settings.lake)
            collect_job_records(store, settings)
        present = _present_partitions(store, settings)
        summary = build_run_summary(
            store.job_records(current_run_id()),
            current_run_id(),
            status,
            settings.planned_partitions,
            present,
        )
    path = write_run_summary(settings.data_dir, summary)
    delete_run_plan(run_plan_location(settings, current_run_id()))
    with json_log_file(run_log_path(settings), this_thread_only=False, mode="a"):
        log_event(
            logger,
            "run.end",
            f"run {summary['run_id']} {status}",
            status=status,
            summary_path=str(path),
            requests=summary["requests"],
            retries=summary["retries"],
            errors=summary["errors"],
            jobs_failed=summary["jobs"]["failed"],
        )
    print(format_run_summary(summary), flush=True)
    print(f"  summary: {path}", flush=True)
    alert_about_run(settings, summary)
    return summary


def alert_policy(settings: WorkflowSettings) -> AlertPolicy:
    """The configured alerting (the webhook from the environment or ``alerts:``)."""
    alerts = settings.config.alerts
    return AlertPolicy(
        webhook_url(alerts.webhook_url),
        on_success=alerts.on_success,
        deadline_seconds=alerts.deadline_seconds,
    )


def alert_about_run(settings: WorkflowSettings, summary: dict[str, Any]) -> None:
    """POST the run's outcome to the webhook when it failed or left sessions missing."""
    policy = alert_policy(settings)
    if not policy.wants(summary):
        return
    with json_log_file(run_log_path(settings), this_thread_only=False, mode="a"):
        sent = send_alert(policy, summary)
    if not sent:
        print(
            "[marketpipe] the alert webhook could not be reached (see the run log); "
            "the run's outcome stands",
            file=sys.stderr,
            flush=True,
        )
