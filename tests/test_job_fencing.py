"""Jobs under a lease: what they write is fenced, and a lost lease never hides a job's error."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketpipe.connectors import ConnectorError
from marketpipe.lake import fencing
from marketpipe.lake.fencing import LEASE_KEY, LeaseLost
from marketpipe.lake.job_fence import JobFence
from marketpipe.lake.lease import ObjectLease
from marketpipe.lake.objects import S3Store
from marketpipe.workflow import jobs
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.jobs import FetchFailed, fetch_partitions
from marketpipe.workflow.vendors import VendorClients
from tests.s3_server import S3Server

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)


class LosesAfterWork:
    """A lease that holds while the job works and is lost before it records its outcome."""

    def __init__(self) -> None:
        self.lost = False

    def check(self, action: str) -> None:
        if self.lost:
            raise LeaseLost(f"lost before {action}")

    def valid_for(self) -> float:
        return 0.0 if self.lost else 60.0


@pytest.fixture
def lost_after_work(monkeypatch: pytest.MonkeyPatch) -> Iterator[LosesAfterWork]:
    lease = LosesAfterWork()
    fencing.register("any", lease)
    try:
        yield lease
    finally:
        fencing.unregister(lease)


def test_a_lease_lost_while_a_failed_job_records_itself_does_not_hide_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost_after_work: LosesAfterWork
) -> None:
    def failing_ingest(*args: object, **kwargs: object) -> None:
        lost_after_work.lost = True
        raise ConnectorError("the vendor answered 500 six times")

    real_record = jobs.record_job

    def record_in_bucket(*args: object) -> None:
        fencing.check_fence("a job record")  # an S3 lake's record is a fenced PUT
        real_record(*args)

    monkeypatch.setattr(VendorClients, "ingest_bars", failing_ingest)
    monkeypatch.setattr(jobs, "record_job", record_in_bucket)
    settings = load_settings(
        {"symbols": ["AAPL"], "start": "2024-01-02", "end": "2024-01-05", "data_dir": str(tmp_path)}
    ).at(NOW)
    with pytest.raises(FetchFailed, match="the vendor answered 500 six times"):
        fetch_partitions(settings, ["AAPL"], ["2024-01-02"], tmp_path / "job.log")


@pytest.fixture
def s3_store(s3_api: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    s3_api.point_here(monkeypatch)
    yield S3Store(f"s3://{s3_api.create_bucket()}/lake")
    s3_api.clock = time.time


class Monotonic:
    """A job's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_job_writes_while_its_controller_renews_and_stops_when_it_does_not(
    s3_api: S3Server, s3_store: S3Store
) -> None:
    controller = ObjectLease(s3_store, "run", stale_after=120, heartbeat=False)
    controller.acquire()
    fencing.unregister(controller)  # this test process plays the job, not the controller
    job_clock = Monotonic()
    job = JobFence(S3Store(s3_store.uri), controller.token, stale_after=120, monotonic=job_clock)
    try:
        job.check("writing a news day")
        assert 100 < job.valid_for() <= 108  # 120 s less the margin, less a second
        # A minute passes for the job; the controller renews: valid for as long again.
        job_clock.now += 60
        controller.renew()
        paused_at = time.time()
        job.check("writing a month file")
        assert job.valid_for() > 100
        # Then the controller is paused: two minutes pass, for the server and the job alike.
        s3_api.clock = lambda: paused_at + 120
        job_clock.now += 120
        with pytest.raises(LeaseLost, match="has not renewed the lease in time"):
            job.check("deleting a month file")
    finally:
        controller.release()


def test_a_job_of_a_run_taken_over_writes_nothing_more(s3_api: S3Server, s3_store: S3Store) -> None:
    old = ObjectLease(s3_store, "old run", stale_after=120, heartbeat=False)
    old.acquire()
    fencing.unregister(old)
    job_clock = Monotonic()
    job = JobFence(S3Store(s3_store.uri), old.token, stale_after=120, monotonic=job_clock)
    fencing.register(s3_store.uri, job)
    try:
        s3_store.put("news/year=2024/month=01/day=02/news.parquet", b"first")  # fenced: fine
        # Another controller takes over the lease object, and time passes for the job: its
        # next write reads the lease again.
        s3_store.put_conditionally(LEASE_KEY, b'{"token": "another"}', if_match=old.etag)
        job_clock.now += 60
        with pytest.raises(LeaseLost, match="another controller holds the lake's lease"):
            s3_store.put("news/year=2024/month=01/day=02/news.parquet", b"late")
        assert s3_store.get("news/year=2024/month=01/day=02/news.parquet") == b"first"
    finally:
        fencing.unregister(job)
        old.etag = None  # not ours to delete any more
        old.release()
