"""The functions Snakemake rules and hooks call; each is usable (and tested) without Snakemake."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from marketpipe.checkpoints import CheckpointStore, JobRecord
from marketpipe.commands.report import make_report
from marketpipe.connectors import ConnectorError
from marketpipe.ingest import IngestReport, StreamSettings, ingest_days
from marketpipe.logs import current_run_id, job_context, json_log_file, log_event
from marketpipe.metrics import MetricsRecorder
from marketpipe.summary import build_run_summary, format_run_summary, write_run_summary
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.vendors import open_client

logger = logging.getLogger(__name__)


class FetchFailed(RuntimeError):
    """A (symbol, month) job could not fetch its bars; the message says which and why."""


def stream_settings(settings: WorkflowSettings) -> StreamSettings:
    """The provenance of the bars this configuration fetches."""
    return StreamSettings(
        vendor=settings.config.vendor,
        timeframe=settings.timeframe,
        feed=settings.config.alpaca.feed,
        adjustment=settings.config.alpaca.adjustment,
    )


def run_log_path(settings: WorkflowSettings) -> Path:
    """The workflow-level JSON log of this run."""
    return settings.data_dir / "_logs" / "runs" / f"{current_run_id()}.jsonl"


def _present_partitions(store: CheckpointStore, settings: WorkflowSettings) -> int:
    config = settings.config
    return store.count_partitions(config.symbols, config.start, config.end)


def fetch_partitions(
    settings: WorkflowSettings, symbol: str, days: Sequence[dt.date | str], log_path: Path | str
) -> IngestReport:
    """Fetch and publish ``symbol``'s missing partitions among ``days``; log JSON to ``log_path``.

    The job's outcome and per-endpoint metrics are stored with the checkpoints under the
    run id. Raises :class:`FetchFailed` naming the symbol, the days and the vendor's error.
    """
    wanted = sorted(day if isinstance(day, dt.date) else dt.date.fromisoformat(day) for day in days)
    month = wanted[0].strftime("%Y-%m")
    label = f"{symbol} {wanted[0]}..{wanted[-1]}"
    recorder = MetricsRecorder()
    report = IngestReport(symbol=symbol, planned_days=len(wanted))
    started = time.time()
    with json_log_file(log_path), job_context(symbol=symbol, month=month):
        log_event(logger, "job.start", f"fetching {label}", planned=len(wanted))
        with CheckpointStore(settings.data_dir) as store:
            error: str | None = None
            try:
                store.claim_settings(settings.lake_settings())
                with open_client(settings, recorder) as client:
                    ingest_days(
                        client, store, settings.data_dir, symbol, wanted,
                        stream_settings(settings), report,
                    )  # fmt: skip
            except (ConnectorError, ValueError) as exc:
                error = f"fetching {label} failed: {exc}"
                logger.error(error, extra={"event": "job.failed"})
                raise FetchFailed(error) from None
            except BaseException as exc:
                error = f"fetching {label} failed: {type(exc).__name__}: {exc}"
                logger.error(error, extra={"event": "job.failed"})
                raise
            finally:
                _finish_job(store, settings, symbol, month, report, recorder, started, error)
    return report


def _finish_job(
    store: CheckpointStore,
    settings: WorkflowSettings,
    symbol: str,
    month: str,
    report: IngestReport,
    recorder: MetricsRecorder,
    started: float,
    error: str | None,
) -> None:
    metrics = {key: stats.to_dict() for key, stats in recorder.snapshot().items()}
    store.record_job(
        JobRecord(
            run_id=current_run_id(),
            job=f"{symbol}/{month}",
            symbol=symbol,
            status="failed" if error else "ok",
            error=error,
            planned=report.planned_days,
            missing=report.missing_days,
            published=len(report.published),
            rows=report.rows,
            rejected_rows=report.rejected_rows,
            requests=sum(stats["requests"] for stats in metrics.values()),
            started_at=started,
            finished_at=time.time(),
            metrics=metrics,
        )
    )
    present, planned = _present_partitions(store, settings), settings.planned_partitions
    log_event(
        logger,
        "job.end",
        f"{symbol} {month}: {report.missing_days} of {report.planned_days} partitions were "
        f"missing; {len(report.published)} published with {report.requests} page request(s), "
        f"{report.rejected_rows} row(s) quarantined",
        status="failed" if error else "ok",
        missing=report.missing_days,
        published=len(report.published),
        rows=report.rows,
        rejected=report.rejected_rows,
        requests=report.requests,
        seconds=round(time.time() - started, 3),
    )
    log_event(
        logger, "progress", f"{present}/{planned} partitions done", done=present, total=planned
    )
    print(
        f"[marketpipe] {symbol} {month}: {len(report.published)} partition(s) published"
        f"{' (FAILED)' if error else ''}; lake {present}/{planned} partitions done",
        file=sys.stderr,
        flush=True,
    )


def write_coverage_report(
    settings: WorkflowSettings, output_dir: Path | str, log_path: Path | str
) -> None:
    """Refresh the coverage PNG and HTML page, including this run's numbers so far."""
    with json_log_file(log_path):
        png, page = make_report(settings, Path(output_dir), run_id=current_run_id())
        log_event(logger, "report.written", f"wrote {png} and {page}", png=str(png), html=str(page))


def start_run(settings: WorkflowSettings) -> None:
    """Log the run's start (Snakemake ``onstart``)."""
    with json_log_file(run_log_path(settings), this_thread_only=False, mode="a"):
        log_event(
            logger,
            "run.start",
            f"run {current_run_id()} started",
            symbols=",".join(settings.config.symbols),
            start=settings.config.start.isoformat(),
            end=settings.config.end.isoformat(),
            vendor=settings.config.vendor,
            planned=settings.planned_partitions,
        )


def finish_run(settings: WorkflowSettings, status: str) -> dict[str, Any]:
    """Roll up, save and print the run summary (Snakemake ``onsuccess`` / ``onerror``)."""
    with CheckpointStore(settings.data_dir) as store:
        present = _present_partitions(store, settings)
        summary = build_run_summary(
            store, current_run_id(), status, settings.planned_partitions, present
        )
    path = write_run_summary(settings.data_dir, summary)
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
    return summary
