"""Retry policy: exponential back-off with full jitter, honouring server hints, bounded."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from marketpipe.connectors.errors import RetryExhaustedError, VendorUnreachable


class RetryCause(StrEnum):
    """Why an attempt failed in a way worth retrying."""

    RATE_LIMITED = "429"
    SERVER_ERROR = "5xx"
    CONNECTION = "connection"
    TIMEOUT = "timeout"
    BAD_BODY = "bad_body"


@dataclass(frozen=True)
class RetryableFailure:
    """One failed attempt: the cause, a safe description and the server's wait hint."""

    cause: RetryCause
    detail: str
    hint_seconds: float | None = None
    # "api.example.com:443: the name does not resolve" when no connection could be made.
    unreachable: str | None = None


def server_wait_hint(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """Seconds the server asked us to wait, from ``Retry-After`` or ``X-RateLimit-Reset``.

    A zero, negative, past or unparsable value is no hint (``None``): the caller then
    falls back to its own back-off instead of retrying immediately.
    """
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        text = retry_after.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                moment = None
            seconds = moment.timestamp() - now_epoch if moment and moment.tzinfo else 0.0
        if seconds > 0:
            return seconds
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            seconds = float(reset) - now_epoch
        except ValueError:
            return None
        if seconds > 0:
            return seconds
    return None


@dataclass
class RetryPolicy:
    """Attempt and time bounds plus the back-off curve for one request."""

    max_attempts: int
    max_elapsed: float
    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)
    # The vendor's rate window: a 429 without a hint waits past it (jittered), since a
    # shorter back-off only lands in the same window again (Polygon counts per minute).
    rate_window: float | None = None

    def backoff(self, retry_number: int) -> float:
        """Full jitter: uniform in ``[0, min(cap, base * 2**(n-1))]`` for the n-th retry."""
        ceiling = min(self.cap, self.base * 2 ** (retry_number - 1))
        return self.rng.uniform(0.0, ceiling)

    def delay(
        self, retry_number: int, hint_seconds: float | None, cause: RetryCause | None = None
    ) -> float:
        """The wait before the n-th retry: the server's hint when it gave one; for a bare 429,
        past the vendor's rate window (plus up to a tenth of it, jittered); else back-off."""
        if hint_seconds is not None and hint_seconds > 0:
            return hint_seconds
        if cause is RetryCause.RATE_LIMITED and self.rate_window:
            return self.rate_window * self.rng.uniform(1.0, 1.1)
        return self.backoff(retry_number)


class RetryBudget:
    """Tracks one request's attempts and elapsed time against its policy."""

    def __init__(self, policy: RetryPolicy, endpoint: str, started: float) -> None:
        self.policy = policy
        self.endpoint = endpoint
        self.started = started
        self.attempts = 0

    def next_delay(self, failure: RetryableFailure, now: float) -> float:
        """Wait before retrying after ``failure``, or raise when a bound is reached."""
        if self.attempts >= self.policy.max_attempts:
            self._unreachable(failure)
            raise RetryExhaustedError(
                self.endpoint, self.attempts, failure.detail, "attempt limit reached"
            )
        delay = self.policy.delay(self.attempts, failure.hint_seconds, failure.cause)
        if now - self.started + delay > self.policy.max_elapsed:
            self._unreachable(failure)
            raise RetryExhaustedError(
                self.endpoint,
                self.attempts,
                failure.detail,
                f"waiting {delay:.1f}s more would exceed the "
                f"{self.policy.max_elapsed:.0f}s retry time limit",
            )
        return delay

    def _unreachable(self, failure: RetryableFailure) -> None:
        """Give up on a host no connection could be made to in the words that say so."""
        if failure.unreachable is not None:
            raise VendorUnreachable(self.endpoint, self.attempts, failure.unreachable)
