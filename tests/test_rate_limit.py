"""The proactive per-minute budget: exact windows, thread-safety and vendor feedback."""

from __future__ import annotations

import bisect
import multiprocessing
import threading
from pathlib import Path

import pytest

from marketpipe.connectors import SlidingWindowRateLimiter
from marketpipe.connectors.rate_budget import SharedRateLimiter
from marketpipe.connectors.rate_limit import EvenShareRateLimiter
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
    assert sent[10] == sent[0] + limiter.window_seconds
    assert limiter.window_seconds == pytest.approx(61.2), "2% margin for network jitter"


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


def test_429_halves_the_budget_and_quiet_windows_probe_back_up(clock: FakeClock) -> None:
    limiter = SlidingWindowRateLimiter(40, clock=clock)
    limiter.observe(429, {"X-RateLimit-Remaining": "3"})
    assert limiter.budget == 40, "a 429 with budget left is not about our spending"
    limiter.observe(429, {})
    assert limiter.budget == 20
    limiter.observe(429, {"X-RateLimit-Remaining": "0"})
    assert limiter.budget == 20, "at most one cut per window"
    clock.sleep(limiter.window_seconds)
    limiter.observe(429, {"X-RateLimit-Remaining": "0"})
    assert limiter.budget == 10
    limiter.observe(200, {})
    assert limiter.budget == 10, "no probing within the same window"
    clock.sleep(limiter.window_seconds)
    limiter.observe(200, {})
    assert limiter.budget == 14
    for _ in range(10):
        clock.sleep(limiter.window_seconds)
        limiter.observe(200, {})
    assert limiter.budget == 40, "never above the configured budget"
    limiter.observe(200, {"X-RateLimit-Limit": "25"})
    clock.sleep(limiter.window_seconds)
    limiter.observe(200, {})
    assert limiter.budget == 25, "never above the vendor's limit either"


def test_shared_limiter_keeps_one_budget_across_connections(
    clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "budget.sqlite"
    first = SharedRateLimiter(path, 10, clock=clock)
    second = SharedRateLimiter(path, 10, clock=clock)
    slots = []
    for index in range(30):
        limiter = first if index % 2 else second
        slots.append(clock.now + limiter.reserve())
    assert _max_in_any_window(slots) == 10
    second.observe(429, {"X-RateLimit-Reset": str(clock.now + 5)})
    assert first.budget == 5
    first.close()
    second.close()


def _frozen_clock() -> float:
    return 1_000.0


def _reserve_many(path: str, count: int, queue: multiprocessing.Queue) -> None:
    # Every process sees the same frozen "now", so all bookings compete for the same slots.
    limiter = SharedRateLimiter(path, 7, window_seconds=2.0, clock=_frozen_clock)
    for _ in range(count):
        queue.put(_frozen_clock() + limiter.reserve())
    limiter.close()


def test_shared_limiter_holds_across_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    path = str(tmp_path / "budget.sqlite")
    workers = [context.Process(target=_reserve_many, args=(path, 12, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    slots = [queue.get(timeout=60) for _ in range(36)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert _max_in_any_window(slots, window=2.0) == 7
    assert max(slots) == pytest.approx(1_000.0 + 2.25 * (36 // 7)), "slots are packed tightly"


def test_an_even_share_spaces_sends_across_jobs_that_take_turns() -> None:
    clock = FakeClock()
    first_job = EvenShareRateLimiter(4, window_seconds=60.0, clock=clock)
    spacing = first_job.spacing
    assert spacing == pytest.approx(61.2 / 4)  # the padded window, evenly
    waits = [first_job.reserve() for _ in range(3)]
    assert waits == pytest.approx([spacing, 2 * spacing, 3 * spacing])
    clock.now += 3 * spacing  # the job sends its last request and ends
    next_job = EvenShareRateLimiter(4, window_seconds=60.0, clock=clock)
    assert next_job.reserve() == pytest.approx(spacing)  # never closer than the spacing
    sends = [clock.now + offset for offset in (-3 * spacing, -2 * spacing, -spacing, spacing)]
    assert _max_in_any_window(sends, 60.0) <= 4
