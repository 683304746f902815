"""Proactive request budgets, fed back by ``X-RateLimit-*`` headers and 429 responses."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

# A reset more than this far ahead of our clock is treated as clock skew, not a real pause.
_MAX_RESET_HORIZON_SECONDS = 120.0


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class RateLimitHeaders:
    """The vendor's view of our budget, from ``X-RateLimit-Limit/Remaining/Reset``."""

    limit: int | None
    remaining: int | None
    reset_epoch: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitHeaders:
        """Read the three headers, ignoring absent or unparsable values."""
        limit = _header_number(headers, "X-RateLimit-Limit")
        remaining = _header_number(headers, "X-RateLimit-Remaining")
        return cls(
            limit=int(limit) if limit is not None else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_epoch=_header_number(headers, "X-RateLimit-Reset"),
        )


class RateLimiter(Protocol):
    """What the transport needs from a limiter; implementations must be thread-safe."""

    def reserve(self) -> float:
        """Claim the next send slot; return the seconds to wait before sending (0 = now)."""
        ...

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response's status and rate-limit headers."""
        ...


class NoRateLimit:
    """A limiter that never waits (for vendors without limits, or tests)."""

    def reserve(self) -> float:
        """Always send now."""
        return 0.0

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Ignore feedback."""


class SlidingWindowRateLimiter:
    """At most ``requests_per_minute`` sends in any 60-second window, shared by all threads.

    ``reserve()`` never blocks: it books a slot and tells the caller how long to wait, so
    the same object serves threads (``time.sleep``) and coroutines (``asyncio.sleep``).
    Server feedback lowers the budget to the vendor's ``X-RateLimit-Limit`` and pauses all
    callers until ``X-RateLimit-Reset`` when the vendor reports the budget spent.
    """

    window_seconds = 60.0

    def __init__(self, requests_per_minute: int, *, clock: Callable[[], float] = time.time) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute}")
        self._budget = requests_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: collections.deque[float] = collections.deque()
        self._paused_until = 0.0

    @property
    def budget(self) -> int:
        """Current requests-per-minute budget (may have been lowered by the vendor)."""
        return self._budget

    def reserve(self) -> float:
        """Book the earliest slot that keeps every 60-second window within budget."""
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] <= now - self.window_seconds:
                self._slots.popleft()
            slot = max(now, self._paused_until, self._slots[-1] if self._slots else now)
            if len(self._slots) >= self._budget:
                slot = max(slot, self._slots[-self._budget] + self.window_seconds)
            self._slots.append(slot)
            return slot - now

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Adopt a lower vendor limit; pause until reset when the vendor says we are out."""
        info = RateLimitHeaders.from_headers(headers)
        with self._lock:
            now = self._clock()
            if info.limit is not None and 0 < info.limit < self._budget:
                logger.warning(
                    "rate budget lowered to the vendor's limit",
                    extra={"event": "rate_limit.lowered", "old": self._budget, "new": info.limit},
                )
                self._budget = info.limit
            exhausted = status == 429 or info.remaining == 0
            reset = info.reset_epoch
            if exhausted and reset is not None and now < reset <= now + _MAX_RESET_HORIZON_SECONDS:
                self._paused_until = max(self._paused_until, reset)
