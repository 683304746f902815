"""Jobs under a lease: what they write is fenced, and a lost lease never hides a job's error."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketpipe.connectors import ConnectorError
from marketpipe.lake import fencing
from marketpipe.lake.fencing import LeaseLost
from marketpipe.workflow import jobs
from marketpipe.workflow.jobs import FetchFailed, fetch_partitions
from marketpipe.workflow.settings import load_settings

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

    monkeypatch.setattr(jobs, "ingest_days", failing_ingest)
    monkeypatch.setattr(jobs, "record_job", record_in_bucket)
    settings = load_settings(
        {"symbols": ["AAPL"], "start": "2024-01-02", "end": "2024-01-05", "data_dir": str(tmp_path)}
    ).at(NOW)
    with pytest.raises(FetchFailed, match="the vendor answered 500 six times"):
        fetch_partitions(settings, ["AAPL"], ["2024-01-02"], tmp_path / "job.log")
