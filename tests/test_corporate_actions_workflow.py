"""Acceptance: the workflow stores corporate actions beside raw bars, and adjusted reads equal
the vendor's own adjusted bars; a split that arrives later changes reads, not files."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from pydantic import SecretStr

import marketpipe
from marketpipe.connectors import AlpacaClient, AlpacaConfig
from marketpipe.connectors.alpaca import BarsQuery
from marketpipe.lake.actions import read_actions
from marketpipe.markettime.calendar import new_york_days_range
from marketpipe.markettime.timeutil import parse_rfc3339
from marketpipe.simulator import SimulatorConfig, SimulatorServer
from marketpipe.simulator.actions import DEMO_CORPORATE_ACTIONS, grouped_records
from tests.chaos_trials import bar_files
from tests.workflow_support import lake_hashes, request_log, snakemake, write_config

pytestmark = pytest.mark.workflow

SYMBOLS = ["AAPL", "MSFT", "SPY"]
FIRST, LAST = dt.date(2024, 1, 2), dt.date(2024, 2, 29)  # the shipped config's range
BUILT_AT = "2026-12-01T12:00:00-05:00"
NEXT_DAY = "2026-12-02T12:00:00-05:00"
# A 3-for-1 MSFT split the vendor processed on 2026-11-20 but published only after the lake
# was built (records can arrive late).
LATE_SPLIT = (
    "forward_splits",
    {
        "id": "late-msft-split",
        "symbol": "MSFT",
        "cusip": "594918104",
        "old_rate": 1,
        "new_rate": 3,
        "process_date": "2026-11-20",
        "ex_date": "2026-11-23",
        "record_date": "2026-11-19",
        "payable_date": "2026-11-20",
    },
)
PRICES = ("open", "high", "low", "close", "vwap")


def run_at(workdir: Path, moment: str) -> subprocess.CompletedProcess[str]:
    return snakemake(workdir, "--cores", "2", env={**os.environ, "MARKETPIPE_NOW": moment})


def vendor_bars(moment: str, adjustment: str, actions: Any = DEMO_CORPORATE_ACTIONS) -> pa.Table:
    """The simulator's own ``adjustment`` bars of the range, asked at ``moment``."""
    now = parse_rfc3339(moment)
    config = SimulatorConfig(corporate_actions=actions)
    start, end = new_york_days_range(FIRST, LAST)
    with SimulatorServer(config, market_clock=lambda: now) as server:
        keys = {"key_id": SecretStr("demo"), "secret_key": SecretStr("demo")}
        client_config = AlpacaConfig(base_url=server.url, requests_per_minute=10_000, **keys)
        query = BarsQuery(symbols=tuple(SYMBOLS), start=start, end=end, adjustment=adjustment)
        with AlpacaClient(client_config) as client:
            return pa.concat_tables(client.fetch_batch(query))


def lake_bars(workdir: Path, adjustment: str) -> pa.Table:
    return marketpipe.read_bars(
        SYMBOLS, FIRST, LAST, data_dir=workdir / "lake", adjustment=adjustment
    )


def assert_same_bars(lake: pa.Table, vendor: pa.Table) -> None:
    """Same rows; prices equal to 1e-9 relative, volumes exactly."""
    assert lake.num_rows == vendor.num_rows > 0
    for name in ("symbol", "timestamp", "trade_count", "volume"):
        assert lake[name].equals(vendor[name].cast(lake.schema.field(name).type)), name
    for name in PRICES:
        ours, theirs = lake[name].to_numpy(), vendor[name].to_numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config's symbols and range, built by one run."""
    workdir = tmp_path_factory.mktemp("actions-lake")
    write_config(workdir, symbols=SYMBOLS, start=FIRST, end=LAST)
    result = run_at(workdir, BUILT_AT)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("adjustment", ["split", "dividend", "all"])
def test_adjusted_reads_equal_the_vendors_adjusted_bars(built: Path, adjustment: str) -> None:
    lake = lake_bars(built, adjustment)
    assert_same_bars(lake, vendor_bars(BUILT_AT, adjustment))
    raw = lake_bars(built, "raw")
    assert not lake["close"].equals(raw["close"])  # the range holds a split and dividends


def test_actions_are_stored_once_per_symbol_and_verified(built: Path) -> None:
    stored = {symbol: read_actions(built / "lake", symbol) for symbol in SYMBOLS}
    kinds = {symbol: table["type"].to_pylist() for symbol, table in stored.items() if table}
    assert kinds == {
        "AAPL": ["cash_dividend", "forward_split"],
        "MSFT": ["cash_dividend"],
        "SPY": ["cash_dividend"],
    }
    aapl = stored["AAPL"]
    assert aapl is not None and aapl["reference_close"].to_pylist()[0] > 0
    verify = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "verify", "--config", "config.yaml"],
        cwd=built,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout
    assert "3 corporate-actions file(s), 59 news file(s) and 6 month file(s): OK" in verify.stdout
    status = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "status", "--config", "config.yaml"],
        cwd=built,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MARKETPIPE_NOW": BUILT_AT},
    )
    assert "corporate actions: 4 stored for 3 of 3 symbol(s), checked through 2026-12-01" in (
        status.stdout
    )
    path = built / "lake" / "corporate_actions" / "symbol=SPY" / "actions.parquet"
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10])
        broken = subprocess.run(
            [sys.executable, "-m", "marketpipe.cli", "verify", "--config", "config.yaml"],
            cwd=built,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        path.write_bytes(original)
    assert broken.returncode == 1
    assert f"BAD {path.relative_to(built)}: content differs from the ledger" in broken.stdout


def test_a_late_split_changes_adjusted_reads_without_rewriting_any_bar(
    built: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    shutil.copytree(built, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    before = lake_hashes(workdir)
    stamps = {path: os.stat(workdir / "lake" / path).st_mtime_ns for path in bar_files(before)}
    split_before = lake_bars(workdir, "split")
    actions = (*DEMO_CORPORATE_ACTIONS, LATE_SPLIT)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["demo"] = {"corporate_actions": grouped_records(actions)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    requests_before = len(request_log(workdir))

    result = run_at(workdir, NEXT_DAY)
    assert result.returncode == 0, result.stderr[-3000:]
    after = lake_hashes(workdir)
    assert bar_files(after) == bar_files(before)
    assert {path: os.stat(workdir / "lake" / path).st_mtime_ns for path in stamps} == stamps
    # (The day's news recheck runs too: news files and requests are another data set's.)
    changed = {path for path in after if after[path] != before.get(path)}
    assert {path for path in changed if not path.startswith("news/")} == {
        "corporate_actions/symbol=MSFT/actions.parquet"
    }
    # One corporate-actions request, no bar requests (nothing was missing, no new dividend);
    # the day's security-master check asks each symbol's asset.
    paths = [entry.path for entry in request_log(workdir)[requests_before:]]
    assert [path for path in paths if path != "/v1beta1/news"] == [
        "/v1/corporate-actions",
        *(f"/v2/assets/{symbol}" for symbol in sorted(SYMBOLS)),
    ]

    split_after = lake_bars(workdir, "split")
    assert_same_bars(split_after, vendor_bars(NEXT_DAY, "split", actions))
    msft_before = split_before.filter(pa.compute.equal(split_before["symbol"], "MSFT"))
    msft_after = split_after.filter(pa.compute.equal(split_after["symbol"], "MSFT"))
    np.testing.assert_allclose(
        msft_after["close"].to_numpy(), msft_before["close"].to_numpy() / 3, rtol=1e-12
    )
    assert msft_after["volume"].to_pylist() == [v * 3 for v in msft_before["volume"].to_pylist()]
    others = pa.compute.not_equal(split_before["symbol"], "MSFT")
    assert split_after.filter(others).equals(split_before.filter(others))


def test_a_symbol_added_to_the_config_is_complete_in_the_run_that_adds_it(
    built: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "lake-copy"
    shutil.copytree(built, workdir)
    write_config(workdir, symbols=[*SYMBOLS, "NVDA"], start=FIRST, end=LAST)
    env = {**os.environ, "MARKETPIPE_NOW": BUILT_AT}  # the same New York day as the build
    planned = snakemake(workdir, "-n", env=env)
    assert "corporate_actions" in planned.stdout, "a never-checked symbol is work for -n"
    result = snakemake(workdir, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_actions(workdir / "lake", "NVDA") is not None
    adjusted = marketpipe.read_bars(
        "NVDA", FIRST, LAST, data_dir=workdir / "lake", adjustment="all"
    )
    assert adjusted.num_rows > 0
    again = snakemake(workdir, "-n", env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
