"""A run's saved plan: the instant it planned at and its jobs, so that job processes started
later (or on other machines) agree with the main process on what the run does."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from marketpipe.lake.ledger import STATE_DIR
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.workflow.consolidation import ConsolidationJob
from marketpipe.workflow.news_planning import NewsJob
from marketpipe.workflow.planning import FetchJob, MonthPlan, PendingJob
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.tick_planning import TickJob


def plan_path(data_dir: Path | str, run_id: str) -> Path:
    """Where a run keeps its fetch jobs for the job processes it starts."""
    return Path(data_dir) / "_state" / "plans" / f"{run_id}.json"


@dataclass(frozen=True)
class RunPlan:
    """What a run decided when it started: its instant and its fetch jobs."""

    now: dt.datetime
    jobs: list[FetchJob]
    actions_marker: Path | None = None  # the corporate-actions check's marker, if it runs
    news_jobs: list[NewsJob] = field(default_factory=list)
    news_marker: Path | None = None  # the news recheck's marker, if it runs
    consolidations: list[ConsolidationJob] = field(default_factory=list)
    securities_marker: Path | None = None  # the security master's marker, if it runs
    tick_jobs: list[TickJob] = field(default_factory=list)


PlanLocation = Path | tuple[LakeStore, str]


def run_plan_location(settings: WorkflowSettings, run_id: str) -> PlanLocation:
    """Where a run keeps its plan: beside the ledger, or for an S3 lake in the bucket, so
    job processes on other machines (no shared filesystem) read the same plan."""
    if settings.lake.is_local:
        return plan_path(settings.state_dir, run_id)
    return settings.lake, f"{STATE_DIR}/plans/{run_id}.json"


def _located(location: PlanLocation) -> tuple[LakeStore, str]:
    if isinstance(location, Path):
        return LocalStore(location.parent), location.name
    return location


def delete_run_plan(location: PlanLocation) -> None:
    """Remove a finished run's plan."""
    store, key = _located(location)
    store.delete(key)


def save_run_plan(location: PlanLocation, plan: RunPlan) -> None:
    """Write the run's instant and jobs (month days, each symbol's missing days) atomically."""
    payload = {
        "now": plan.now.isoformat(),
        "actions_marker": str(plan.actions_marker) if plan.actions_marker else None,
        "news_marker": str(plan.news_marker) if plan.news_marker else None,
        "securities_marker": str(plan.securities_marker) if plan.securities_marker else None,
        "consolidations": [
            {"month": job.label, "symbols": list(job.symbols)} for job in plan.consolidations
        ],
        "news_jobs": [
            {
                "month": job.month,
                "days": _iso(job.days),
                "missing": _iso(job.missing),
                "incomplete": _iso(job.incomplete),
            }
            for job in plan.news_jobs
        ],
        "tick_jobs": [job.to_json() for job in plan.tick_jobs],
        "jobs": [
            {
                "month": job.month.label,
                "days": _iso(job.month.days),
                "missing": {group.symbol: _iso(group.missing) for group in job.pending},
            }
            for job in plan.jobs
        ],
    }
    store, key = _located(location)
    store.put(key, json.dumps(payload).encode())


def _iso(days: tuple[dt.date, ...]) -> list[str]:
    return [day.isoformat() for day in days]


def _dates(values: list[str]) -> tuple[dt.date, ...]:
    return tuple(dt.date.fromisoformat(value) for value in values)


def load_run_plan(location: PlanLocation) -> RunPlan | None:
    """The plan saved by :func:`save_run_plan`, or ``None`` when there is no such file.

    A job process reads the workflow later than the main process did: it takes the run's
    instant and jobs from here, so it agrees on which sessions were final.
    """
    store, key = _located(location)
    try:
        payload = json.loads(store.get(key))
    except FileNotFoundError:
        return None
    jobs = []
    for item in payload["jobs"]:
        year, month = (int(part) for part in item["month"].split("_"))
        month_plan = MonthPlan(year, month, _dates(item["days"]))
        pending = tuple(
            PendingJob(symbol, month_plan, _dates(days)) for symbol, days in item["missing"].items()
        )
        jobs.append(FetchJob(month_plan, pending))
    marker, news = payload.get("actions_marker"), payload.get("news_marker")
    news_jobs = [
        NewsJob(
            item["month"],
            _dates(item["days"]),
            _dates(item["missing"]),
            _dates(item.get("incomplete", [])),
        )
        for item in payload.get("news_jobs", [])
    ]
    consolidations = [
        ConsolidationJob(ConsolidationJob.month_of_label(item["month"]), tuple(item["symbols"]))
        for item in payload.get("consolidations", [])
    ]
    return RunPlan(
        dt.datetime.fromisoformat(payload["now"]),
        jobs,
        Path(marker) if marker else None,
        news_jobs,
        Path(news) if news else None,
        consolidations,
        Path(securities) if (securities := payload.get("securities_marker")) else None,
        [TickJob.from_json(item) for item in payload.get("tick_jobs", [])],
    )
