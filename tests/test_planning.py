"""Planning: which jobs fetch what, and the plan a run hands to its job processes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from marketpipe.lake.storage import partition_path
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.workflow.planning import MonthPlan, PendingJob, fetch_jobs, plan_months
from marketpipe.workflow.run_plan import RunPlan, load_run_plan, save_run_plan

MONTHS = plan_months([s.date for s in trading_sessions(dt.date(2024, 1, 2), dt.date(2024, 2, 29))])
JANUARY, FEBRUARY = MONTHS


def _pending(
    symbol: str, month: MonthPlan = JANUARY, missing: tuple[dt.date, ...] | None = None
) -> PendingJob:
    return PendingJob(symbol, month, month.days if missing is None else missing)


def test_symbols_missing_the_same_days_share_jobs_of_bounded_size() -> None:
    pending = [_pending(symbol) for symbol in ("SPY", "AAPL", "MSFT", "QQQ", "IWM")]
    jobs = fetch_jobs(pending, symbols_per_job=2)
    assert [job.symbols for job in jobs] == [("AAPL", "IWM"), ("MSFT", "QQQ"), ("SPY",)]
    assert jobs[0].name == "2024_01/AAPL-IWM" and jobs[2].name == "2024_01/SPY"


def test_different_missing_days_or_months_never_share_a_job() -> None:
    hole = (JANUARY.days[3],)
    pending = [
        _pending("AAPL"),
        _pending("MSFT", missing=hole),
        _pending("SPY", FEBRUARY),
        _pending("QQQ", missing=hole),
    ]
    jobs = fetch_jobs(pending, symbols_per_job=10)
    assert sorted((job.month.label, job.symbols) for job in jobs) == [
        ("2024_01", ("AAPL",)),
        ("2024_01", ("MSFT", "QQQ")),
        ("2024_02", ("SPY",)),
    ]


def test_symbols_missing_one_day_share_jobs_up_to_the_same_count_of_partitions() -> None:
    last = (JANUARY.days[-1],)
    pending = [_pending(f"S{index:03d}", missing=last) for index in range(500)]
    jobs = fetch_jobs(pending, symbols_per_job=10)
    # Ten symbols' whole months would be 210 partitions; the URL bounds a stream at 200.
    assert [len(job.symbols) for job in jobs] == [200, 200, 100]
    two_days = (JANUARY.days[-2], JANUARY.days[-1])
    jobs = fetch_jobs([_pending(f"S{i:03d}", missing=two_days) for i in range(500)], 10)
    assert [len(job.symbols) for job in jobs] == [105, 105, 105, 105, 80]
    assert {len(job.symbols) for job in fetch_jobs(pending, symbols_per_job=1)} == {1}
    # A month planned up to the range's end only (a daily update on its first session).
    first = MonthPlan(2024, 2, (FEBRUARY.days[0],))
    jobs = fetch_jobs([_pending(f"S{i:03d}", first) for i in range(100)], 10)
    assert [len(job.symbols) for job in jobs] == [100]


def test_targets_name_each_missing_partition_unless_the_month_is_empty(tmp_path: Path) -> None:
    (empty,) = fetch_jobs([_pending("AAPL"), _pending("MSFT")], 10)
    assert empty.targets(tmp_path) == [str(partition_path(tmp_path, "AAPL", JANUARY.days[0]))]
    assert len(empty.outputs(tmp_path)) == 2 * len(JANUARY.days)
    holes = (JANUARY.days[3], JANUARY.days[9])
    (partly,) = fetch_jobs([_pending("MSFT", missing=holes)], 10)
    assert partly.targets(tmp_path) == [str(partition_path(tmp_path, "MSFT", d)) for d in holes]


def test_a_saved_plan_reads_back_identical_with_its_instant(tmp_path: Path) -> None:
    jobs = fetch_jobs([_pending("AAPL"), _pending("MSFT", FEBRUARY, FEBRUARY.days[2:5])], 10)
    # A month planned while its last sessions were not final yet keeps its own days.
    partial = MonthPlan(2024, 3, (dt.date(2024, 3, 1),))
    jobs += fetch_jobs([_pending("SPY", partial)], 10)
    path = tmp_path / "plans" / "run.json"
    now = dt.datetime(2024, 3, 4, 19, 5, tzinfo=dt.UTC)
    save_run_plan(path, RunPlan(now, jobs))
    assert load_run_plan(path) == RunPlan(now, jobs)
    assert load_run_plan(tmp_path / "missing.json") is None


def test_symbols_per_job_must_be_positive() -> None:
    with pytest.raises(ValueError, match="symbols_per_job must be at least 1"):
        fetch_jobs([_pending("AAPL")], 0)
