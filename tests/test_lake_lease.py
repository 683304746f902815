"""One writer per S3 lake: the lease object, against moto's S3 server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from marketpipe.lake.fencing import LeaseLost, check_fence
from marketpipe.lake.lease import LEASE_KEY, LeaseHeld, ObjectLease
from marketpipe.lake.objects import S3Store
from tests.s3_server import S3Server
from tests.workflow_support import ROOT, marketpipe_command


class Clock:
    """The contender's wall clock and the holder's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


@pytest.fixture
def store(s3_api: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    s3_api.point_here(monkeypatch)
    return S3Store(f"s3://{s3_api.create_bucket()}/lake")


@pytest.fixture(autouse=True)
def _released() -> Iterator[list[ObjectLease]]:
    """Every lease a test takes is let go afterwards (a "crashed" holder included), so its
    fence guards no later test."""
    yield CREATED
    while CREATED:
        CREATED.pop().release()


CREATED: list[ObjectLease] = []


def lease(store: S3Store, clock: Clock, purpose: str, **options: object) -> ObjectLease:
    CREATED.append(created := _lease(store, clock, purpose, **options))
    return created


def _lease(store: S3Store, clock: Clock, purpose: str, **options: object) -> ObjectLease:
    return ObjectLease(
        store,
        purpose,
        clock=clock,
        monotonic=clock,
        wait=clock.wait,
        heartbeat=False,
        stale_after=120,
        **options,
    )


def test_one_controller_holds_the_lease_until_it_lets_go(store: S3Store) -> None:
    clock = Clock()
    first, second = lease(store, clock, "first run"), lease(store, clock, "second run")
    first.acquire()
    for _ in range(5):  # the holder renews in time: the lease never looks abandoned
        with pytest.raises(LeaseHeld, match=r"in progress \(pid \d+ on .*, first run"):
            second.acquire()
        clock.now += 100
        assert first.renew()
    first.release()
    second.acquire()
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "second run"
    second.release()
    assert not store.exists(LEASE_KEY)


def test_a_silent_holder_is_taken_over_by_this_machines_clock(store: S3Store) -> None:
    # Staleness never compares two machines' clocks: the contender times the silence itself.
    clock = Clock()
    crashed, recovering = lease(store, clock, "crashed run"), lease(store, clock, "rerun")
    crashed.acquire()
    clock.now += 10_000  # however long ago, the contender has not seen it silent yet
    with pytest.raises(LeaseHeld, match="unchanged for 0 s as seen from here"):
        recovering.acquire()
    clock.now += 121
    recovering.acquire()
    assert not crashed.renew() and crashed.lost
    crashed.release()  # must not delete the new holder's lease
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "rerun"
    recovering.release()


def test_what_a_machine_saw_is_remembered_across_attempts(store: S3Store, tmp_path: Path) -> None:
    clock = Clock()
    seen = tmp_path / "lease-observed.json"
    lease(store, clock, "crashed run").acquire()
    with pytest.raises(LeaseHeld):
        lease(store, clock, "cron at 21:05", observations=seen).acquire()
    clock.now += 121
    lease(store, clock, "cron at 21:07", observations=seen).acquire()  # a new process
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "cron at 21:07"


def _identity_of_a_finished_process() -> dict[str, object]:
    code = "import json; from marketpipe.foundation.processes import process_identity as p; "
    code += "print(json.dumps(p()))"
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(finished.stdout)


def test_a_dead_holder_of_this_machine_is_stale_at_once(store: S3Store) -> None:
    clock = Clock()
    dead = {**_identity_of_a_finished_process(), "purpose": "killed run", "since": clock.now}
    store.put(LEASE_KEY, json.dumps(dead).encode())
    rerun = lease(store, clock, "rerun")
    rerun.acquire()  # no waiting for the lease to go stale
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "rerun"
    rerun.release()


def test_a_holder_on_another_machine_with_the_same_hostname_is_not(store: S3Store) -> None:
    # Containers on two machines often share a hostname: the boot id tells them apart.
    clock = Clock()
    elsewhere = {
        **_identity_of_a_finished_process(),
        "host": socket.gethostname(),
        "boot_id": "another-machine",
        "purpose": "run elsewhere",
    }
    store.put(LEASE_KEY, json.dumps(elsewhere).encode())
    with pytest.raises(LeaseHeld, match="run elsewhere"):
        lease(store, clock, "rerun").acquire()


def test_two_controllers_taking_over_at_once_leave_one_winner(store: S3Store) -> None:
    clock = Clock()
    lease(store, clock, "crashed run").acquire()
    contenders = [lease(store, clock, f"rerun {index}") for index in range(4)]
    for contender in contenders:  # each has seen the lease once
        with pytest.raises(LeaseHeld):
            contender.acquire()
    clock.now += 500
    outcomes: list[str] = []
    barrier = threading.Barrier(len(contenders))

    def take(contender: ObjectLease) -> None:
        barrier.wait()
        try:
            contender.acquire()
            outcomes.append("won")
        except LeaseHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=take, args=(c,)) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]


def test_the_heartbeat_renews_the_lease(store: S3Store) -> None:
    held = ObjectLease(store, "run", renew_every=0.01)
    held.acquire()
    first = held.etag
    renewed = threading.Event()
    try:
        for _ in range(3000):  # bounded: a renewal every 10 ms
            if held.etag != first:
                renewed.set()
                break
            renewed.wait(0.01)
    finally:
        held.release()
    assert renewed.is_set() and held.lost is None


class FlakyStore(S3Store):
    """An S3 lake whose lease renewals fail while ``failing`` is set."""

    failing = False

    def put_conditionally(self, key: str, data: bytes, if_match: str | None = None) -> str | None:
        if self.failing and if_match is not None:
            raise ConnectionError("the network is down")
        return super().put_conditionally(key, data, if_match)


def test_a_renewal_that_fails_for_a_while_is_retried(s3_api: S3Server, store: S3Store) -> None:
    clock = Clock()
    flaky = FlakyStore(store.uri)
    held = lease(flaky, clock, "run")
    held.acquire()
    flaky.failing = True
    waits: list[float] = []

    def recovering_wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.now += seconds
        flaky.failing = len(waits) < 3  # the network comes back after three pauses
        return False

    held._wait = recovering_wait
    assert held._renew_with_retries()
    assert held.lost is None and waits == [1.0, 2.0, 4.0]
    held.check("writing a partition")  # still ours
    held.release()


def test_a_lease_that_cannot_be_renewed_in_time_is_lost_and_fences_writes(
    store: S3Store,
) -> None:
    clock = Clock()
    flaky = FlakyStore(store.uri)
    held = lease(flaky, clock, "run")
    held.acquire()
    flaky.failing = True
    assert not held._renew_with_retries()  # retried until its validity ran out
    assert held.lost and "could not renew" in held.lost
    with pytest.raises(LeaseLost, match="stopped before writing ohlcv/x"):
        flaky.put("ohlcv/x", b"late bytes")
    with pytest.raises(LeaseLost):
        check_fence("a ledger commit")
    assert not store.exists("ohlcv/x")
    held.release()  # the lease is left to go stale: it may be someone else's by now
    check_fence("anything")  # released: nothing guards this process any more


def test_a_paused_holder_stops_writing_before_anyone_may_take_over(store: S3Store) -> None:
    # A SIGSTOP'd or starved controller: no renewal ran, and by its own monotonic clock the
    # lease expires at 90% of the window, before a contender may count it abandoned.
    clock = Clock()
    held, contender = lease(store, clock, "paused run"), lease(store, clock, "rerun")
    held.acquire()
    with pytest.raises(LeaseHeld):
        contender.acquire()
    clock.now += 108.5
    with pytest.raises(LeaseLost, match="no renewal succeeded for 108 s"):
        store.put("ohlcv/y", b"bytes")
    with pytest.raises(LeaseHeld):  # not yet abandoned for the contender
        contender.acquire()
    clock.now += 12
    contender.acquire()
    assert not store.exists("ohlcv/y")
    held.release()
    contender.release()


@pytest.mark.workflow
def test_a_second_controller_refuses_to_write_an_s3_lake_in_use(
    s3_api: S3Server, store: S3Store, tmp_path: Path
) -> None:
    config = {
        "symbols": ["AAPL"],
        "start": "2024-01-02",
        "end": "2024-01-05",
        "data_dir": store.uri,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    other_machine = ObjectLease(store, "marketpipe update", heartbeat=False)
    other_machine.acquire()
    try:
        result = subprocess.run(
            marketpipe_command("update", "--workflow", str(ROOT)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **s3_api.environment},
        )
    finally:
        other_machine.release()
    assert result.returncode == 75, result.stdout + result.stderr
    assert "another run is in progress (pid" in result.stderr
    assert store.list("ohlcv") == []


class LostAnswers(S3Store):
    """An S3 lake whose conditional PUTs reach the bucket but whose answers are lost while
    ``losing`` is set: the client's retry then meets its own object, as boto3's does (412)."""

    losing = False

    def put_conditionally(self, key: str, data: bytes, if_match: str | None = None) -> str | None:
        written = super().put_conditionally(key, data, if_match)
        if self.losing and written is not None:
            return super().put_conditionally(key, data, if_match)  # the retry: refused
        return written


def test_a_lease_write_whose_answer_was_lost_is_recognised_as_its_own(store: S3Store) -> None:
    clock = Clock()
    lossy = LostAnswers(store.uri)
    lossy.losing = True
    held = lease(lossy, clock, "run")
    held.acquire()  # not "another run is in progress" (exit 75): it was this one
    assert held.etag == store.get_with_etag(LEASE_KEY)[1]
    assert held.renew() and held.lost is None  # not "taken over" (exit 76)
    held.check("writing a partition")
    lossy.losing = False
    other = lease(store, clock, "other run")
    with pytest.raises(LeaseHeld):
        other.acquire()  # a genuine other writer is still refused
    held.release()
