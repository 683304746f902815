"""The proactive per-minute budget: exact windows, thread-safety and vendor feedback."""

from __future__ import annotations

import bisect
import threading

from marketpipe.connectors import SlidingWindowRateLimiter
from tests.conftest import FakeClock


def _max_in_any_window(times: list[float], window: float = 60.0) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - index for index, t in enumerate(ordered))


def test_budget_is_never_exceeded_in_any_sixty_second_window(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(10, clock=clock)
    sent = []
    for _ in range(35):
        clock.sleep(limiter.reserve())
        sent.append(clock.now)
    assert _max_in_any_window(sent) == 10
    # The first ten go at once; then each waits for a slot to leave the window.
    assert sent[9] == sent[0]
    assert sent[10] == sent[0] + 60


def test_concurrent_reservations_from_threads_stay_within_budget(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(50, clock=clock)
    slots: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            wait = limiter.reserve()
            with lock:
                slots.append(clock.now + wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(slots) == 320
    assert _max_in_any_window(slots) == 50


def test_vendor_limit_lowers_the_budget(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(200, clock=clock)
    limiter.observe(200, {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"})
    assert limiter.budget == 100
    limiter.observe(200, {"X-RateLimit-Limit": "500"})
    assert limiter.budget == 100


def test_exhausted_budget_pauses_everyone_until_reset(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(200, clock=clock)
    reset = clock.now + 12
    limiter.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
    assert limiter.reserve() == 12
    limiter = SlidingWindowRateLimiter(200, clock=clock)
    limiter.observe(429, {"X-RateLimit-Reset": str(clock.now + 3)})
    assert limiter.reserve() == 3


def test_past_or_absurd_resets_do_not_pause(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(200, clock=clock)
    limiter.observe(429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(clock.now - 5)})
    limiter.observe(429, {"X-RateLimit-Reset": str(clock.now + 10_000)})
    limiter.observe(429, {"X-RateLimit-Reset": "soon"})
    assert limiter.reserve() == 0
