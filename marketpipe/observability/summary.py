"""The run summary: every job's outcome and metrics rolled up, printed and saved as JSON."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketpipe.foundation.files import write_atomically
from marketpipe.observability.metrics import EndpointStats, merge_endpoint_stats

RUNS_DIR = "_runs"
LATEST = "latest.json"


@dataclass(frozen=True)
class JobRecord:
    """What one workflow job did, with its per-endpoint metrics."""

    run_id: str
    job: str
    symbol: str
    status: str
    error: str | None
    planned: int
    missing: int
    published: int
    rows: int
    rejected_rows: int
    requests: int
    started_at: float
    finished_at: float
    metrics: dict[str, Any]
    flagged_rows: int = 0


def build_run_summary(
    records: Sequence[JobRecord],
    run_id: str,
    status: str,
    planned: int,
    present: int,
    planned_jobs: int | None = None,
) -> dict[str, Any]:
    """Roll up the jobs of run ``run_id`` (their ledger records); ``planned_jobs`` (when
    known) counts the jobs that never finished (an interrupted run's)."""
    endpoints = merge_endpoint_stats(
        {key: EndpointStats.from_dict(value) for key, value in record.metrics.items()}
        for record in records
    )
    retries: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for stats in endpoints.values():
        retries.update(stats.retries)
        errors.update(stats.errors)
    failures = [
        {"job": record.job, "symbol": record.symbol, "error": record.error}
        for record in records
        if record.status != "ok"
    ]
    started = min((record.started_at for record in records), default=time.time())
    return {
        "run_id": run_id,
        "status": status,
        "started_at": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "jobs": {
            "total": len(records),
            "succeeded": len(records) - len(failures),
            "failed": len(failures),
            "unfinished": max(0, (planned_jobs or 0) - len(records)),
            "failures": failures,
        },
        "partitions": {
            "planned": planned,
            "present": present,
            "missing": planned - present,
            "published": sum(record.published for record in records),
            "rows": sum(record.rows for record in records),
            "rejected_rows": sum(record.rejected_rows for record in records),
            "flagged_rows": sum(record.flagged_rows for record in records),
        },
        "requests": sum(stats.requests for stats in endpoints.values()),
        "retries": dict(sorted(retries.items())),
        "errors": dict(sorted(errors.items())),
        "endpoints": {key: stats.to_dict(with_latencies=False) for key, stats in endpoints.items()},
    }


def write_run_summary(data_dir: Path, summary: dict[str, Any]) -> Path:
    """Save the summary as ``_runs/<run_id>.json`` and ``_runs/latest.json``."""
    data = (json.dumps(summary, indent=2, sort_keys=False) + "\n").encode()
    path = Path(data_dir) / RUNS_DIR / f"{summary['run_id']}.json"
    write_atomically(path, data)
    write_atomically(path.with_name(LATEST), data)
    return path


def latest_run_summary(data_dir: Path) -> dict[str, Any] | None:
    """The most recent run's summary, if any run finished."""
    path = Path(data_dir) / RUNS_DIR / LATEST
    return json.loads(path.read_text()) if path.exists() else None


def failures_by_cause(failures: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Failed jobs grouped by what went wrong (``fetching X failed: <cause>``), so that one
    cause shared by many jobs (refused credentials, an outage) is said once."""
    grouped: dict[str, list[str]] = {}
    for failure in failures:
        error = str(failure["error"])
        label, separator, cause = error.partition(" failed: ")
        if not separator:
            label, cause = str(failure["job"]), error
        grouped.setdefault(cause, []).append(label.removeprefix("fetching "))
    return grouped


def format_run_summary(summary: dict[str, Any]) -> str:
    """A short human-readable report of a run."""
    jobs, parts = summary["jobs"], summary["partitions"]
    lines = [
        f"MarketPipe run {summary['run_id']}: {summary['status']}",
        f"  partitions: {parts['present']}/{parts['planned']} present, "
        f"{parts['published']} published this run ({parts['rows']:,} rows, "
        f"{parts['rejected_rows']:,} quarantined, {parts.get('flagged_rows', 0):,} flagged), "
        f"{parts['missing']} missing",
        f"  jobs: {jobs['succeeded']} ok, {jobs['failed']} failed"
        + (f", {jobs['unfinished']} did not finish" if jobs.get("unfinished") else ""),
        f"  requests: {summary['requests']}, retries: "
        + (", ".join(f"{k}={v}" for k, v in summary["retries"].items()) or "none"),
    ]
    for key, stats in summary["endpoints"].items():
        latency = stats["latency_ms"]
        lines.append(
            f"  {key}: {stats['requests']} requests, {stats['rows']:,} rows, "
            f"{stats['bytes'] / 1e6:.1f} MB, latency p50 {latency['p50']} ms / p95 "
            f"{latency['p95']} ms / max {latency['max']} ms, rate-limit waits "
            f"{stats['rate_limit_waits']} ({stats['rate_limit_wait_seconds']:.1f}s)"
        )
    for cause, labels in failures_by_cause(jobs["failures"]).items():
        shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")
        lines.append(f"  FAILED {shown}: {cause}")
    return "\n".join(lines)
