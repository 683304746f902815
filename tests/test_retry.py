"""Retry policy: server hints, full-jitter back-off and its bounds."""

from __future__ import annotations

import email.utils
import random

import pytest

from marketpipe.connectors import RetryExhaustedError
from marketpipe.connectors.retry import (
    RetryableFailure,
    RetryBudget,
    RetryCause,
    RetryPolicy,
    server_wait_hint,
)

NOW = 1_700_000_000.0


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert server_wait_hint({"Retry-After": "7"}, NOW) == 7
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert server_wait_hint({"Retry-After": date}, NOW) == pytest.approx(30)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "0"},
        {"Retry-After": "-3"},
        {"Retry-After": email.utils.formatdate(NOW - 30, usegmt=True)},
        {"Retry-After": "later"},
        {"X-RateLimit-Reset": str(NOW - 1)},
        {"X-RateLimit-Reset": str(NOW)},
        {},
    ],
)
def test_zero_past_or_garbage_hints_are_no_hint(headers: dict[str, str]) -> None:
    assert server_wait_hint(headers, NOW) is None


def test_rate_limit_reset_is_a_hint_when_retry_after_is_absent() -> None:
    assert server_wait_hint({"X-RateLimit-Reset": str(int(NOW) + 4)}, NOW) == 4
    assert server_wait_hint({"Retry-After": "0", "X-RateLimit-Reset": str(NOW + 2)}, NOW) == 2


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=10, max_elapsed=1e9, base=0.5, cap=8, rng=random.Random(1))
    for retry in range(1, 9):
        ceiling = min(8, 0.5 * 2 ** (retry - 1))
        delays = [policy.backoff(retry) for _ in range(200)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8
    assert policy.delay(3, 12.5) == 12.5


def test_budget_enforces_attempts_and_total_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=10, base=1, cap=1, rng=random.Random(0))
    failure = RetryableFailure(RetryCause.SERVER_ERROR, "HTTP 503: busy")
    budget = RetryBudget(policy, "stocks/bars", started=0)
    budget.attempts = 3
    with pytest.raises(RetryExhaustedError, match=r"after 3 attempt.*attempt limit.*HTTP 503"):
        budget.next_delay(failure, now=1)
    budget = RetryBudget(policy, "stocks/bars", started=0)
    budget.attempts = 1
    hinted = RetryableFailure(RetryCause.RATE_LIMITED, "HTTP 429", hint_seconds=60)
    with pytest.raises(RetryExhaustedError, match="exceed the 10s retry time limit"):
        budget.next_delay(hinted, now=0)
