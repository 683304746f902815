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


@dataclass
class BudgetState:
    """The adaptive part of a request budget; both limiters keep one of these.

    ``budget`` is what may be spent per window now, ``ceiling`` the most it may grow back to
    (the configured budget, or the vendor's ``X-RateLimit-Limit`` when that is lower).
    """

    budget: int
    ceiling: int
    paused_until: float = 0.0
    last_change: float = 0.0


def adapt_budget(
    state: BudgetState, status: int, headers: Mapping[str, str], now: float, window: float
) -> BudgetState:
    """Feed one response back into the budget (additive increase, multiplicative decrease).

    A lower vendor limit caps the budget at once; a 429 for a spent budget halves it (once
    per window) and pauses until the vendor's reset; a window without trouble lets it probe
    back up by a tenth of the ceiling.
    """
    info = RateLimitHeaders.from_headers(headers)
    budget, ceiling = state.budget, state.ceiling
    paused_until, last_change = state.paused_until, state.last_change
    if info.limit is not None and 0 < info.limit < ceiling:
        ceiling = info.limit
    # A 429 that still shows budget remaining is not about our spending (the vendor is
    # throttling for another reason): back off through the retry, do not cut the budget.
    # Cut at most once per window: the effect of a cut takes a window to show.
    spent = info.remaining is None or info.remaining == 0
    if status == 429 and spent and now - last_change >= window:
        budget, last_change = max(1, budget // 2), now
    elif status != 429 and budget < ceiling and now - last_change >= window:
        budget, last_change = min(ceiling, budget + max(1, ceiling // 10)), now
    budget = min(budget, ceiling)
    reset = info.reset_epoch
    exhausted = status == 429 or info.remaining == 0
    if exhausted and reset is not None and now < reset <= now + _MAX_RESET_HORIZON_SECONDS:
        paused_until = max(paused_until, reset)
    if budget != state.budget:
        logger.warning(
            "rate budget %s from %d to %d per window",
            "lowered" if budget < state.budget else "raised",
            state.budget,
            budget,
            extra={
                "event": "rate_limit.adapted",
                "old": state.budget,
                "new": budget,
                "status": status,
            },
        )
    return BudgetState(budget, ceiling, paused_until, last_change)


def padded_window(window_seconds: float) -> float:
    """The window the client keeps: 2% (at least 0.25 s) longer, so that scheduling delays
    between booking a slot and the request's arrival cannot push the vendor's count over
    the budget at a window boundary."""
    return window_seconds + max(0.02 * window_seconds, 0.25)


def earliest_slot(
    now: float,
    state: BudgetState,
    latest: float | None,
    budget_th_latest: float | None,
    window: float,
) -> float:
    """The first send time keeping every window within budget, after the slots booked so far.

    ``latest`` is the last booked slot; ``budget_th_latest`` the ``budget``-th most recent
    one inside the window (``None`` while fewer than ``budget`` are booked).
    """
    slot = max(now, state.paused_until, latest if latest is not None else now)
    if budget_th_latest is not None:
        slot = max(slot, budget_th_latest + window)
    return slot


class SlidingWindowRateLimiter:
    """At most ``requests_per_minute`` sends in any 60-second window, shared by all threads.

    ``reserve()`` never blocks: it books a slot and tells the caller how long to wait, so
    the same object serves threads (``time.sleep``) and coroutines (``asyncio.sleep``).
    Responses adapt the budget (:func:`adapt_budget`). For one budget across processes,
    see :class:`marketpipe.connectors.rate_budget.SharedRateLimiter`.
    """

    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        window_seconds: float = 60.0,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1, got {requests_per_minute}")
        self.window_seconds = padded_window(window_seconds)
        self._state = BudgetState(requests_per_minute, requests_per_minute)
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: collections.deque[float] = collections.deque()

    @property
    def budget(self) -> int:
        """Current budget per window (lowered by the vendor's limit or 429s)."""
        return self._state.budget

    def reserve(self) -> float:
        """Book the earliest slot that keeps every window within budget."""
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] <= now - self.window_seconds:
                self._slots.popleft()
            budget = self._state.budget
            latest = self._slots[-1] if self._slots else None
            nth = self._slots[-budget] if len(self._slots) >= budget else None
            slot = earliest_slot(now, self._state, latest, nth, self.window_seconds)
            self._slots.append(slot)
            return slot - now

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Adapt the budget to the vendor's feedback."""
        with self._lock:
            self._state = adapt_budget(
                self._state, status, headers, self._clock(), self.window_seconds
            )


class EvenShareRateLimiter:
    """One job's fixed share of a budget that jobs on other machines share too.

    Sends are spaced evenly, ``window / requests_per_window`` apart (the window padded as
    :func:`padded_window` pads it), and the first one waits one spacing after the limiter is
    made. Jobs that take turns on one share (Snakemake runs at most as many as there are
    shares) therefore never send closer together than the spacing either, whoever came
    before: any window holds at most ``requests_per_window`` sends per share, with no state
    shared between machines.
    """

    def __init__(
        self,
        requests_per_window: int,
        *,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if requests_per_window < 1:
            raise ValueError(f"requests_per_window must be >= 1, got {requests_per_window}")
        self.spacing = padded_window(window_seconds) / requests_per_window
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()

    def reserve(self) -> float:
        """Book the next evenly spaced slot; return the seconds to wait for it."""
        with self._lock:
            now = self._clock()
            self._last = max(now, self._last + self.spacing)
            return self._last - now

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Nothing to adapt: the share is fixed (the transport honours 429's wait hints)."""

    def close(self) -> None:
        """Nothing to release."""
