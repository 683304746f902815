"""Reliability under crashes, faults, a shared rate budget and bad input (workflow level)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path

import pytest

from marketpipe.chaos import CRASH_POINTS
from marketpipe.simulator import LoggedRequest, read_request_log
from tests.chaos_trials import SMALL_RUN_ARRIVALS, run_crash_trial
from tests.workflow_support import (
    PROCESS_JOBS,
    lake_hashes,
    max_in_any_window,
    request_log,
    simulator_process,
    snakemake,
    snakemake_command,
    write_config,
)

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_a_random_moment_then_recovery_is_byte_identical(
    point: str, reference: Path, tmp_path: Path
) -> None:
    nth = random.Random(f"crash-trial-{point}").randint(1, SMALL_RUN_ARRIVALS[point])
    workdir = tmp_path / "trial"
    write_config(workdir)
    result = run_crash_trial(
        command=snakemake_command(workdir, "--cores", "8"),
        workdir=workdir,
        data_dir=workdir / "lake",
        point=point,
        nth=nth,
        reference=lake_hashes(reference),
    )
    assert result.crashed, f"the run reached {point} fewer than {nth} times"
    assert result.passed, result


ALPACA_ENV = {**os.environ, "APCA_API_KEY_ID": "demo", "APCA_API_SECRET_KEY": "demo"}


def _rate_limited_run(
    workdir: Path, vendor_limit: int, budget: int, *extra: str
) -> list[LoggedRequest]:
    """A workflow run against a simulator process allowing ``vendor_limit`` requests per
    2-second window, with a configured budget of ``budget``; the requests it served."""
    log_file = workdir / "requests.jsonl"
    window = 2.0
    with simulator_process(
        log_file, "--rate-limit", str(vendor_limit), "--rate-window", str(window)
    ) as url:
        write_config(
            workdir,
            vendor="alpaca",
            end=dt.date(2024, 1, 31),
            alpaca={
                "base_url": url,
                "requests_per_minute": budget,
                "rate_window_seconds": window,
                "page_size": 2500,
            },
        )
        result = snakemake(workdir, "--cores", "8", *extra, env=ALPACA_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return read_request_log(log_file)


@pytest.mark.parametrize("jobs", ["threads", "processes"])
def test_one_request_budget_for_the_whole_run(jobs: str, tmp_path: Path) -> None:
    budget = 6
    extra = () if jobs == "threads" else PROCESS_JOBS
    served = _rate_limited_run(tmp_path, budget, budget, *extra)
    assert len(served) > 2 * budget, "enough requests for the budget to matter"
    assert [entry.status for entry in served].count(429) == 0
    assert max_in_any_window([entry.time for entry in served], 2.0) <= budget


def test_client_adapts_when_the_vendor_allows_less_than_configured(tmp_path: Path) -> None:
    vendor_limit = 4
    served = _rate_limited_run(tmp_path, vendor_limit, 50)
    rejected = [entry.status for entry in served].count(429)
    assert rejected <= 2, f"the client hammered the vendor: {rejected} 429s"
    assert len(served) - rejected > 3 * vendor_limit


FAULT_KINDS_TO_CAUSE = {
    "429": "429",
    "429_retry_after": "429",
    "429_reset": "429",
    "500": "5xx",
    "502": "5xx",
    "503": "5xx",
    "504": "5xx",
    "reset": "connection",
    "timeout": "timeout",
    "truncate": "bad_body",
    "invalid_json": "bad_body",
}
MATRIX_CONFIG = {
    "end": dt.date(2024, 1, 31),
    "alpaca": {
        "page_size": 1000,
        "read_timeout": 0.5,
        "max_attempts": 12,
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "rate_window_seconds": 0.5,  # a bare 429 waits out the window
    },
}


@pytest.fixture(scope="module")
def fault_free(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    workdir = tmp_path_factory.mktemp("fault-free")
    write_config(workdir, **MATRIX_CONFIG)
    result = snakemake(workdir, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    return lake_hashes(workdir)


@pytest.mark.parametrize("fault", list(FAULT_KINDS_TO_CAUSE))
def test_fault_matrix_lake_is_identical_and_every_retry_is_counted(
    fault: str, fault_free: dict[str, str], tmp_path: Path
) -> None:
    write_config(tmp_path, **MATRIX_CONFIG, demo={"faults": {fault: 0.15}})
    result = snakemake(tmp_path, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert lake_hashes(tmp_path) == fault_free
    served = request_log(tmp_path)
    injected = sum(entry.fault == fault for entry in served)
    assert injected >= 2, f"only {injected} {fault} fault(s) in {len(served)} requests"
    summary = json.loads((tmp_path / "lake" / "_runs" / "latest.json").read_text())
    assert summary["retries"] == {FAULT_KINDS_TO_CAUSE[fault]: injected}
    assert summary["requests"] == len(served)


def test_an_unknown_symbol_fails_alone_and_clearly(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        symbols=["AAPL", "ZZZZ"],
        end=dt.date(2024, 1, 31),
        demo={"unknown_symbols": ["ZZZZ"]},
    )
    result = snakemake(tmp_path, "--cores", "8")
    assert result.returncode != 0
    assert "the vendor does not know ZZZZ" in result.stdout + result.stderr
    assert len(list((tmp_path / "lake" / "ohlcv" / "symbol=AAPL").rglob("bars.parquet"))) == 21
    assert not (tmp_path / "lake" / "ohlcv" / "symbol=ZZZZ").exists()


BAD_CONFIGS = [
    ("symbol=AAPL", "config key symbol: not a MarketPipe setting; did you mean symbols?"),
    ("symbols=[]", "config key symbols"),
    ("symbols=AAPL!", "config key symbols.0"),
    ("symbols=AAPL,../../etc", "config key symbols.1"),
    ("start=2024-02-30", "config key start"),
    ("start=yesterday", "config key start"),
    ("end=2023-01-01", "end (2023-01-01) is before start (2024-01-02)"),
    ("timeframe=7Fortnight", "config key timeframe"),
    ("timeframe=1Week", "config key timeframe: '1Week' spans several days"),
    ("vendor=tiingo", "config key vendor"),
    ("data_dir=", "config key data_dir"),
    ("alpaca={requests_per_minute: -5}", "config key alpaca.requests_per_minute"),
    ("alpaca={base_url: http://data.example.com}", "uses plain http; use https"),
    ("alpaca={feed: otc}", "config key alpaca.feed"),
    ("alpaca={adjustment: magic}", "adjustment 'magic' is not valid"),
    ("alpaca={page_size: 20000}", "config key alpaca.page_size"),
    ("demo={faults: {teapot: 0.1}}", "unknown fault kind"),
    ("vendor=alpaca", "key_id is missing: set the APCA_API_KEY_ID environment variable"),
]


@pytest.mark.parametrize(("override", "message"), BAD_CONFIGS)
def test_bad_config_stops_before_any_request_naming_the_key(
    override: str, message: str, tmp_path: Path
) -> None:
    write_config(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    result = snakemake(tmp_path, "--cores", "8", "--config", override, env=environment)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "lake").exists(), "nothing may be fetched or written"
