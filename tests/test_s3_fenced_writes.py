"""Writes to an S3 lake are signed to expire with the lease: S3 itself refuses a late one.

moto's S3 server on loopback; the server's clock and the lease's clock are moved by hand,
and a pause between a write's signing and its sending is played by the session that sends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from marketpipe.lake.fencing import LeaseLost
from marketpipe.lake.lease import ObjectLease
from marketpipe.lake.objects import S3Store
from marketpipe.lake.s3_writes import ATTEMPTS, UNFENCED_EXPIRY, S3WriteError
from tests.s3_server import S3Request, S3Server
from tests.test_lake_lease import Clock

STALE_AFTER = 10.0  # the lease's validity is 9 s after its last renewal


class Delayed:
    """Sends a signed request ``seconds`` late: this process paused in between."""

    def __init__(self, session: Any, seconds: float, clock: Clock, server: S3Server) -> None:
        self.session = session
        self.seconds = seconds
        self.clock = clock
        self.server = server

    def send(self, request: Any) -> Any:
        self.clock.now += self.seconds
        self.server.clock = lambda: time.time() + self.seconds
        return self.session.send(request)


@pytest.fixture
def server(s3_api: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    s3_api.point_here(monkeypatch)
    yield s3_api
    s3_api.clock = time.time
    s3_api.refuse = None


@pytest.fixture
def store(server: S3Server) -> S3Store:
    return S3Store(f"s3://{server.create_bucket()}/lake")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lease(store: S3Store, clock: Clock) -> Iterator[ObjectLease]:
    held = ObjectLease(
        store,
        "run",
        clock=clock,
        monotonic=clock,
        wait=clock.wait,
        heartbeat=False,
        stale_after=STALE_AFTER,
        renew_every=1,
    )
    held.acquire()
    yield held
    held.release()


def _writes_of(server: S3Server, store: S3Store, key: str) -> list[S3Request]:
    """The PUTs and DELETEs of ``key`` the server saw."""
    path = f"/{store.bucket}/{store.object_key(key)}"
    return [r for r in server.requests if r.path == path and r.method in ("PUT", "DELETE")]


def _expiry(request: S3Request) -> int:
    return int(parse_qs(request.query)["X-Amz-Expires"][0])


def test_a_write_never_outlives_the_lease(
    server: S3Server, store: S3Store, lease: ObjectLease, clock: Clock
) -> None:
    store.put("ohlcv/a.parquet", b"a")
    clock.now += 3.2  # 5.8 s of the lease left: the signature lives 5 s
    store.put("ohlcv/b.parquet", b"b")
    store.delete("ohlcv/a.parquet")
    assert [_expiry(request) for request in _writes_of(server, store, "ohlcv/a.parquet")] == [9, 5]
    assert [_expiry(request) for request in _writes_of(server, store, "ohlcv/b.parquet")] == [5]
    # Under a second left: no signature can be that short, so the writer waits for a
    # renewal; none comes, the lease runs out, and nothing is sent.
    clock.now += 5.5
    store.writer.sleep = clock.wait
    with pytest.raises(LeaseLost, match=r"stopped before writing ohlcv/c\.parquet"):
        store.put("ohlcv/c.parquet", b"c")
    assert _writes_of(server, store, "ohlcv/c.parquet") == []


def test_a_write_delayed_past_the_lease_is_refused_by_the_server(
    server: S3Server, store: S3Store, lease: ObjectLease, clock: Clock
) -> None:
    store.put("ohlcv/a.parquet", b"before the pause")
    store.writer._http = Delayed(store.writer._http, 20, clock, server)
    with pytest.raises(LeaseLost, match="no renewal succeeded"):
        store.put("ohlcv/a.parquet", b"after the pause")
    with pytest.raises(LeaseLost):
        store.delete("ohlcv/a.parquet")
    late = _writes_of(server, store, "ohlcv/a.parquet")[1:]
    assert [request.status for request in late] == [403]  # arrived, refused; nothing more
    assert store.get("ohlcv/a.parquet") == b"before the pause"


def test_a_thread_slow_while_the_lease_was_renewed_signs_again(
    server: S3Server, store: S3Store, lease: ObjectLease
) -> None:
    class SlowOnce:
        def __init__(self, session: Any) -> None:
            self.session = session
            self.sent = 0

        def send(self, request: Any) -> Any:
            self.sent += 1
            server.clock = (lambda: time.time() + 20) if self.sent == 1 else time.time
            return self.session.send(request)

    store.writer.sleep = lambda seconds: None
    store.writer._http = SlowOnce(store.writer._http)
    store.put("ohlcv/a.parquet", b"a")
    assert [r.status for r in _writes_of(server, store, "ohlcv/a.parquet")] == [403, 200]


def test_a_clock_behind_the_servers_is_named(
    server: S3Server, store: S3Store, lease: ObjectLease
) -> None:
    store.writer.sleep = lambda seconds: None
    server.clock = lambda: time.time() + 60
    with pytest.raises(S3WriteError, match=r"clock is behind the server's: synchronise it"):
        store.put("ohlcv/a.parquet", b"a")
    assert not store.exists("ohlcv/a.parquet")


def test_without_a_lease_a_signature_lives_fifteen_minutes(
    server: S3Server, store: S3Store
) -> None:
    store.put("ohlcv/a.parquet", b"a")
    assert [_expiry(request) for request in _writes_of(server, store, "ohlcv/a.parquet")] == [
        UNFENCED_EXPIRY
    ]


def test_transient_failures_are_retried_with_back_off_and_never_leak_the_signature(
    server: S3Server, store: S3Store
) -> None:
    delays: list[float] = []
    store.writer.sleep = delays.append
    refused = iter([True, True])
    server.refuse = lambda request: request.method == "PUT" and next(refused, False)
    store.put("ohlcv/a.parquet", b"a")
    assert store.get("ohlcv/a.parquet") == b"a"
    assert len(delays) == 2 and all(0 <= delay <= 5 for delay in delays)

    server.refuse = lambda request: request.method == "PUT"
    with pytest.raises(S3WriteError) as refusal:
        store.put("ohlcv/b.parquet", b"b")
    message = str(refusal.value)
    assert f"after {ATTEMPTS} tries (last: 503 ServiceUnavailable)" in message
    assert "Signature" not in message and "Credential" not in message
    assert not store.exists("ohlcv/b.parquet")


def test_a_body_damaged_on_the_way_is_refused(server: S3Server, store: S3Store) -> None:
    class Damaging:
        def __init__(self, session: Any) -> None:
            self.session = session

        def send(self, request: Any) -> Any:
            request.body = b"X" + request.body[1:]
            return self.session.send(request)

    store.writer._http = Damaging(store.writer._http)
    with pytest.raises(S3WriteError, match="400 BadDigest"):
        store.put("ohlcv/a.parquet", b"the bytes")
    assert not store.exists("ohlcv/a.parquet")


def test_a_bucket_in_another_region_is_written_after_one_redirect(server: S3Server) -> None:
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server.url).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    store = S3Store(f"s3://{bucket}/lake")  # this machine's region is us-east-1
    store.put("ohlcv/a.parquet", b"a")
    store.put("ohlcv/b.parquet", b"b")
    store.delete("ohlcv/a.parquet")
    assert store.list("ohlcv") == ["ohlcv/b.parquet"]
    statuses = [request.status for request in server.requests if bucket in request.path]
    assert statuses.count(400) == 1  # the first write learnt the region; none after it
