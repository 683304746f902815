"""Alerts of a run: its outcome at the end, or why it could not start, once per run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from marketpipe.observability.alerts import (
    AlertPolicy,
    send_alert,
    unstarted_run_summary,
    webhook_url,
)
from marketpipe.observability.logs import json_log_file
from marketpipe.observability.summary import RUNS_DIR, write_run_summary
from marketpipe.workflow.settings import WorkflowSettings


def run_log_path(settings: WorkflowSettings, run_id: str) -> Path:
    """The workflow-level JSON log of run ``run_id``."""
    return settings.state_dir / "_logs" / "runs" / f"{run_id}.jsonl"


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
    with json_log_file(run_log_path(settings, summary["run_id"]), this_thread_only=False, mode="a"):
        sent = send_alert(policy, summary)
    if not sent:
        print(
            "[marketpipe] the alert webhook could not be reached (see the run log); "
            "the run's outcome stands",
            file=sys.stderr,
            flush=True,
        )


def alert_unstarted_run(
    run_id: str,
    cause: str,
    settings: WorkflowSettings | None = None,
    policy: AlertPolicy | None = None,
) -> None:
    """Record and alert about a run that failed before any job ran (``marketpipe update``:
    a bad config, the lake unreachable, the lake held too long ...).

    With ``settings`` the summary is saved like any run's; without (the config itself is
    broken), ``policy`` says where the alert goes.
    """
    summary = unstarted_run_summary(run_id, cause)
    if settings is not None:
        write_run_summary(settings.state_dir, summary)
        alert_about_run(settings, summary)
    elif policy is not None and send_alert(policy, summary) is False and policy.webhook_url:
        print("[marketpipe] the alert webhook could not be reached", file=sys.stderr)


def run_summarised(settings: WorkflowSettings, run_id: str) -> bool:
    """Whether run ``run_id`` saved its summary (then it also sent its alert)."""
    return (settings.state_dir / RUNS_DIR / f"{run_id}.json").is_file()


def policy_from_raw(raw: dict[str, Any] | None) -> AlertPolicy:
    """The alert webhook when the config could not be loaded: the environment's, else the
    file's ``alerts.webhook_url`` if it can be read at all."""
    alerts = (raw or {}).get("alerts") if isinstance(raw, dict) else None
    configured = alerts.get("webhook_url") if isinstance(alerts, dict) else None
    fallback = SecretStr(configured) if isinstance(configured, str) and configured else None
    return AlertPolicy(webhook_url(fallback))
