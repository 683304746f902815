"""Tell someone when an unattended run went wrong: one JSON POST to a webhook per run.

The URL is a secret (Slack-style URLs embed a token): it is kept as a ``SecretStr``, never
logged and never written, and errors about it never quote it. Delivery is bounded: a short
timeout per attempt, few attempts, and a deadline for all of them, so a webhook that fails
or hangs costs the run a few seconds at most and never fails it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

logger = logging.getLogger(__name__)

WEBHOOK_VARIABLE = "MARKETPIPE_ALERT_WEBHOOK_URL"


@dataclass(frozen=True)
class AlertPolicy:
    """Where alerts go and when: failures and missing sessions always, success on request."""

    webhook_url: SecretStr | None
    on_success: bool = False
    deadline_seconds: float = 5.0
    attempts: int = 3

    def wants(self, summary: dict[str, Any]) -> bool:
        """Whether this run's outcome deserves an alert."""
        if self.webhook_url is None:
            return False
        return self.on_success or not run_succeeded(summary)


def run_succeeded(summary: dict[str, Any]) -> bool:
    """A run succeeded when it says so and left no final partition missing."""
    return summary["status"] == "success" and summary["partitions"]["missing"] == 0


def webhook_url(configured: SecretStr | None) -> SecretStr | None:
    """The webhook: ``$MARKETPIPE_ALERT_WEBHOOK_URL`` first, then the config's ``alerts:``."""
    from_environment = os.environ.get(WEBHOOK_VARIABLE, "").strip()
    return SecretStr(from_environment) if from_environment else configured


def unstarted_run_summary(run_id: str, cause: str) -> dict[str, Any]:
    """The summary of a run that failed before any job ran (bad config, lake unreachable,
    lake held too long ...): what an alert and ``_runs/`` say about it."""
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "run_id": run_id,
        "status": "failed",
        "error": cause,
        "started_at": now,
        "finished_at": now,
        "jobs": {"total": 0, "succeeded": 0, "failed": 0, "failures": []},
        "partitions": {
            **dict.fromkeys(("planned", "present", "missing", "published"), 0),
            **dict.fromkeys(("rows", "rejected_rows", "flagged_rows"), 0),
        },
        "requests": 0,
        "retries": {},
        "errors": {},
        "endpoints": {},
    }


def alert_text(summary: dict[str, Any]) -> str:
    """One Slack-compatible line saying what happened."""
    if summary.get("error"):
        return f"MarketPipe run {summary['run_id']} FAILED before any job ran: {summary['error']}"
    parts, jobs = summary["partitions"], summary["jobs"]
    verdict = "succeeded" if run_succeeded(summary) else "FAILED"
    text = (
        f"MarketPipe run {summary['run_id']} {verdict}: {parts['present']}/{parts['planned']} "
        f"final partitions present, {parts['missing']} missing, {jobs['failed']} job(s) failed"
    )
    failures = [f"{failure['symbol']}: {failure['error']}" for failure in jobs["failures"]]
    return text + ("; " + "; ".join(failures) if failures else "")


def send_alert(
    policy: AlertPolicy,
    summary: dict[str, Any],
    *,
    post: Callable[..., requests.Response] = requests.post,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """POST ``{"text": ..., "summary": ...}`` to the webhook; True once it answered 2xx.

    Never raises: failures are logged (without the URL) and the run goes on.
    """
    if policy.webhook_url is None:
        return False
    body = {"text": alert_text(summary), "summary": summary}
    deadline = clock() + policy.deadline_seconds
    problem = "no attempt fitted in the deadline"
    for attempt in range(1, policy.attempts + 1):
        remaining = deadline - clock()
        if remaining <= 0.05:
            break
        try:
            response = post(
                policy.webhook_url.get_secret_value(),
                json=body,
                timeout=min(policy.deadline_seconds / policy.attempts, remaining),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            problem = f"{type(exc).__name__} (attempt {attempt})"  # its text holds the URL
        else:
            if 200 <= response.status_code < 300:
                logger.info("alert sent", extra={"event": "alert.sent", "attempt": attempt})
                return True
            problem = f"HTTP {response.status_code} (attempt {attempt})"
        sleep(min(0.2 * attempt, max(0.0, deadline - clock())))
    logger.warning(
        "the alert webhook could not be reached: %s; the run's outcome stands",
        problem,
        extra={"event": "alert.failed", "problem": problem},
    )
    return False
