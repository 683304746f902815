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


# The job records whose rows are not bars: their "symbol" names the data set.
SIDE_DATASETS = frozenset({"news", "trades", "quotes"})


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
    permanent: bool = False  # a person must act before a rerun can succeed

    @property
    def is_news(self) -> bool:
        """Whether this is a news job (its rows are articles, not bars)."""
        return self.symbol == "news"

    @property
    def is_bars(self) -> bool:
        """Whether its rows are bars (not articles, trades or quotes)."""
        return self.symbol not in SIDE_DATASETS


def build_run_summary(
    records: Sequence[JobRecord],
    run_id: str,
    status: str,
    planned: int,
    present: int,
    planned_jobs: int | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Roll up the jobs of run ``run_id`` (their ledger records); ``planned_jobs`` (when
    known) counts the jobs that never finished (an interrupted run's); ``notes``: what the
    run learned that a person should hear once (a rename)."""
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
        {
            "job": record.job,
            "symbol": record.symbol,
            "error": record.error,
            "permanent": record.permanent,
        }
        for record in records
        if record.status != "ok"
    ]
    bars = [record for record in records if record.is_bars]
    news = [record for record in records if record.is_news]
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
            "published": sum(record.published for record in bars),
            "rows": sum(record.rows for record in bars),
            "rejected_rows": sum(record.rejected_rows for record in bars),
            "flagged_rows": sum(record.flagged_rows for record in bars),
        },
        "news": {
            "articles": sum(record.rows for record in news),
            "refused": sum(record.rejected_rows for record in news),
        },
        "ticks": {
            kind: sum(record.rows for record in records if record.symbol == kind)
            for kind in ("trades", "quotes")
        },
        "requests": sum(stats.requests for stats in endpoints.values()),
        "retries": dict(sorted(retries.items())),
        "errors": dict(sorted(errors.items())),
        "endpoints": {key: stats.to_dict(with_latencies=False) for key, stats in endpoints.items()},
        "notes": list(notes),
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


def failure_advice(permanent: bool) -> str:
    """What a failure asks of the reader: a person's fix, or only the next run."""
    if permanent:
        return "permanent: a person must fix this; the next run will fail alike until then"
    return "transient: the next run tries again"


def failures_by_cause(failures: list[dict[str, Any]]) -> dict[str, tuple[list[str], bool]]:
    """Failed jobs grouped by what went wrong (``fetching X failed: <cause>``), so that one
    cause shared by many jobs (refused credentials, an outage) is said once; with whether
    every one of them needs a person (see :func:`failure_advice`)."""
    grouped: dict[str, tuple[list[str], bool]] = {}
    for failure in failures:
        error = str(failure["error"])
        label, separator, cause = error.partition(" failed: ")
        if not separator:
            label, cause = str(failure["job"]), error
        labels, permanent = grouped.get(cause, ([], True))
        labels.append(label.removeprefix("fetching "))
        grouped[cause] = labels, permanent and bool(failure.get("permanent"))
    return grouped


def _requests_by_endpoint(summary: dict[str, Any]) -> str:
    """`` (stocks/bars 14, news 6)``: the requests of each endpoint, busiest first."""
    counts = sorted(
        (
            (key.partition(":")[2] or key, stats["requests"])
            for key, stats in summary["endpoints"].items()
        ),
        key=lambda item: -item[1],
    )
    return f" ({', '.join(f'{name} {count}' for name, count in counts)})" if counts else ""


def format_run_summary(summary: dict[str, Any]) -> str:
    """The run's verdict for a person: status, partitions, news, jobs, requests and each
    cause of failure once, with whether a person must act."""
    jobs, parts = summary["jobs"], summary["partitions"]
    partitions = (
        f"  partitions: {parts['present']:,}/{parts['planned']:,} present, "
        f"{parts['published']:,} published this run ({parts['rows']:,} rows, "
        f"{parts['rejected_rows']:,} quarantined, {parts.get('flagged_rows', 0):,} flagged), "
        f"{parts['missing']:,} missing"
        if parts["planned"]
        else "  partitions: none planned (no session of the range is final yet)"
    )
    lines = [
        f"MarketPipe run {summary['run_id']}: {summary['status']}",
        partitions,
        f"  jobs: {jobs['succeeded']} ok, {jobs['failed']} failed"
        + (f", {jobs['unfinished']} did not finish" if jobs.get("unfinished") else ""),
        f"  requests: {summary['requests']}{_requests_by_endpoint(summary)}, retries: "
        + (", ".join(f"{k}={v}" for k, v in summary["retries"].items()) or "none"),
    ]
    news = summary.get("news") or {}
    if news.get("articles") or news.get("refused"):
        lines.insert(
            2, f"  news: {news['articles']:,} article(s) received, {news['refused']} refused"
        )
    ticks = {kind: rows for kind, rows in (summary.get("ticks") or {}).items() if rows}
    if ticks:
        stored = ", ".join(f"{rows:,} {kind}" for kind, rows in ticks.items())
        lines.insert(2, f"  ticks: {stored} stored this run")
    lines += [f"  note: {note}" for note in summary.get("notes", [])]
    for cause, (labels, permanent) in failures_by_cause(jobs["failures"]).items():
        shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")
        lines.append(f"  FAILED {shown}: {cause} ({failure_advice(permanent)})")
    return "\n".join(lines)
