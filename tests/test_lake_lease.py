"""One writer per S3 lake: the lease object, against moto's S3 server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from marketpipe.lake.lease import LEASE_KEY, LeaseHeld, ObjectLease
from marketpipe.lake.objects import S3Store
from tests.s3_server import S3Server
from tests.workflow_support import ROOT, marketpipe_command


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(s3_api: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    s3_api.point_here(monkeypatch)
    return S3Store(f"s3://{s3_api.create_bucket()}/lake")


def lease(store: S3Store, clock: Clock, purpose: str) -> ObjectLease:
    return ObjectLease(store, purpose, clock=clock, heartbeat=False, stale_after=120)


def test_one_controller_holds_the_lease_until_it_lets_go(store: S3Store) -> None:
    clock = Clock()
    first, second = lease(store, clock, "first run"), lease(store, clock, "second run")
    first.acquire()
    clock.now += 100  # the holder renews in time
    assert first.renew()
    clock.now += 100
    with pytest.raises(LeaseHeld, match=r"another run is in progress \(pid \d+ on .*, first run"):
        second.acquire()
    first.release()
    second.acquire()
    holder = json.loads(store.get(LEASE_KEY))
    assert holder["purpose"] == "second run"
    second.release()
    assert not store.exists(LEASE_KEY)


def test_a_silent_holder_is_taken_over_and_learns_it_lost(store: S3Store) -> None:
    clock = Clock()
    crashed, recovering = lease(store, clock, "crashed run"), lease(store, clock, "rerun")
    crashed.acquire()
    clock.now += 121
    recovering.acquire()
    assert not crashed.renew() and crashed.lost
    crashed.release()  # must not delete the new holder's lease
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "rerun"
    recovering.release()


def test_a_dead_holder_of_this_machine_is_stale_at_once(store: S3Store) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    clock = Clock()
    dead = {
        "pid": int(finished.stdout),
        "host": socket.gethostname(),
        "purpose": "killed run",
        "since": clock.now,
        "renewed": clock.now,
    }
    store.put(LEASE_KEY, json.dumps(dead).encode())
    rerun = lease(store, clock, "rerun")
    rerun.acquire()  # no waiting for the lease to go stale
    assert json.loads(store.get(LEASE_KEY))["purpose"] == "rerun"
    rerun.release()


def test_two_controllers_taking_over_at_once_leave_one_winner(store: S3Store) -> None:
    clock = Clock()
    lease(store, clock, "crashed run").acquire()
    clock.now += 500
    contenders = [lease(store, clock, f"rerun {index}") for index in range(4)]
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
    assert renewed.is_set() and not held.lost


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
