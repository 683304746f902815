"""The workflow in the real API's world: a moving clock, the free plan, and real bars.

Each run pins "now" with MARKETPIPE_NOW, which the workflow, the CLI and the bundled simulator
all read, so a test can run at 14:00 on a session day, then later, and compare the lakes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import yaml

from marketpipe.ingest.bars import ingest_days
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import partition_path
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SyntheticMarket
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.status import lake_status
from marketpipe.workflow.streams import stream_settings
from marketpipe.workflow.vendors import open_client
from tests.workflow_support import (
    DAYS,
    ROOT,
    SYMBOLS,
    lake_hashes,
    marketpipe_command,
    request_log,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.workflow

TODAY = dt.date(2026, 11, 24)  # a Tuesday; Thursday is Thanksgiving, Friday an early close
AT_TWO_PM = "2026-11-24T14:00:00-05:00"
AFTER_FINAL = "2026-11-24T21:00:00-05:00"
THROUGH_NEXT_WEEK = {"start": "2026-11-19", "end": "2026-12-02"}
FINAL_AT_TWO_PM = [dt.date(2026, 11, 19), dt.date(2026, 11, 20), dt.date(2026, 11, 23)]


def at(moment: str) -> dict[str, str]:
    """The environment of a process whose clock reads ``moment``."""
    return {**os.environ, "MARKETPIPE_NOW": moment}


def run_at(workdir: Path, moment: str, *args: str) -> subprocess.CompletedProcess[str]:
    return snakemake(workdir, "--cores", "2", *args, env=at(moment))


def marketpipe_cli(workdir: Path, moment: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "marketpipe.cli", *args, "--config", "config.yaml"]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env=at(moment), timeout=120
    )


def lake_days(workdir: Path, symbol: str) -> list[dt.date]:
    with CheckpointStore(workdir / "lake") as store:
        ledger = sorted(store.ledger(symbol))
    on_disk = [
        day
        for day in (s.date for s in trading_sessions(dt.date(2026, 11, 1), dt.date(2026, 12, 31)))
        if partition_path(workdir / "lake", symbol, day).exists()
    ]
    assert ledger == on_disk, "the ledger and the files disagree"
    return on_disk


def summary(workdir: Path) -> dict[str, object]:
    return json.loads((workdir / "lake" / "_runs" / "latest.json").read_text())


@pytest.fixture(scope="module")
def after_the_close(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The range built in one run after today's session became final."""
    workdir = tmp_path_factory.mktemp("after-the-close")
    write_config(workdir, **THROUGH_NEXT_WEEK)
    result = run_at(workdir, AFTER_FINAL)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.parametrize("end", ["2026-12-02", "today"])
def test_today_and_the_future_are_fetched_only_once_final(
    after_the_close: Path, tmp_path: Path, end: str
) -> None:
    write_config(tmp_path, **{**THROUGH_NEXT_WEEK, "end": end})
    early = run_at(tmp_path, AT_TWO_PM)
    assert early.returncode == 0, early.stderr[-3000:]
    for symbol in SYMBOLS:
        assert lake_days(tmp_path, symbol) == FINAL_AT_TWO_PM
    if end != "today":  # `today` already ends at the latest final session
        note = "[marketpipe] not fetched yet: 2026-11-24 (final at 2026-11-24 20:30 EST)"
        assert note in early.stderr
        plan = marketpipe_cli(tmp_path, AT_TWO_PM, "plan")
        assert plan.returncode == 0, plan.stderr
        assert "all 6 planned partitions are present" in plan.stdout
        assert "2026-11-24 (final at 2026-11-24 20:30 EST)" in plan.stdout
        status = marketpipe_cli(tmp_path, AT_TWO_PM, "status")
        assert "2026-11-24 (final at 2026-11-24 20:30 EST)" in status.stdout
    dry = snakemake(tmp_path, "-n", env=at(AT_TWO_PM))
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # Minutes after the extended session ends, its bars can still change: nothing to do.
    settling = snakemake(tmp_path, "-n", env=at("2026-11-24T20:29:00-05:00"))
    assert "Nothing to be done" in settling.stdout + settling.stderr
    later = run_at(tmp_path, AFTER_FINAL)
    assert later.returncode == 0, later.stderr[-3000:]
    assert lake_days(tmp_path, "AAPL") == [*FINAL_AT_TWO_PM, TODAY]
    assert lake_hashes(tmp_path) == lake_hashes(after_the_close)


def test_a_range_wholly_in_the_future_does_nothing_and_says_why(tmp_path: Path) -> None:
    write_config(tmp_path, start="2026-11-24", end="2026-12-02")
    result = run_at(tmp_path, AT_TWO_PM)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing to fetch: no session of 2026-11-24..2026-12-02 is final yet" in result.stderr
    assert not (tmp_path / "lake" / "ohlcv").exists()


def test_the_free_plan_never_sees_a_403(after_the_close: Path, tmp_path: Path) -> None:
    listed_today = {"plan": "free", "listings": {"NEWCO": TODAY}}
    write_config(tmp_path, **THROUGH_NEXT_WEEK, symbols=["AAPL", "NEWCO"], demo=listed_today)
    # 14:00: NEWCO has no bar in the final sessions, so its existence is checked (its
    # asset: latest bars with feed=sip would be refused on the free plan); 21:00: today is
    # final, and SIP data of its last 15 minutes (20:45 on) would still be refused.
    for moment in (AT_TWO_PM, AFTER_FINAL):
        result = run_at(tmp_path, moment)
        assert result.returncode == 0, result.stderr[-3000:]
        run = summary(tmp_path)
        assert run["status"] == "success" and run["errors"] == {}
    assert all(entry.status == 200 for entry in request_log(tmp_path))
    assert "/v2/assets/NEWCO" in {entry.path for entry in request_log(tmp_path)}
    # Listed after the range it was fetched for: known to the vendor, so known-empty there.
    with CheckpointStore(tmp_path / "lake") as store:
        newco = store.ledger("NEWCO")
    assert sorted(newco) == [*FINAL_AT_TWO_PM, TODAY]
    assert all(newco[day].known_empty and newco[day].rows == 0 for day in FINAL_AT_TWO_PM)
    assert newco[TODAY].rows > 0
    # The free plan's SIP bars of final sessions are the paid plan's, byte for byte.
    free, paid = lake_hashes(tmp_path), lake_hashes(after_the_close)
    assert {key: free[key] for key in free if "AAPL" in key} == {
        key: paid[key] for key in paid if "AAPL" in key
    }


def test_on_the_free_plan_an_unknown_symbol_still_fails_alone(tmp_path: Path) -> None:
    demo = {"plan": "free", "unknown_symbols": ["ZZZZ"]}
    write_config(tmp_path, **THROUGH_NEXT_WEEK, symbols=["AAPL", "ZZZZ"], demo=demo)
    result = run_at(tmp_path, AT_TWO_PM)
    assert result.returncode != 0
    assert "the vendor does not know ZZZZ" in result.stdout + result.stderr
    assert lake_days(tmp_path, "AAPL") == FINAL_AT_TWO_PM
    assert lake_days(tmp_path, "ZZZZ") == []
    assert "http_403" not in json.dumps(summary(tmp_path))


def test_daily_bars_wait_for_the_next_sessions_open(tmp_path: Path) -> None:
    daily = {"symbols": ["AAPL"], "start": "2026-11-19", "end": "2026-11-24", "timeframe": "1Day"}
    reference = tmp_path / "reference"
    write_config(reference, **daily)
    assert run_at(reference, "2026-12-01T12:00:00-05:00").returncode == 0
    moving = tmp_path / "moving"
    write_config(moving, **daily)
    evening = run_at(moving, AFTER_FINAL)
    assert evening.returncode == 0, evening.stderr[-3000:]
    assert lake_days(moving, "AAPL") == FINAL_AT_TWO_PM
    assert "2026-11-24 (final at 2026-11-25 10:00 EST)" in evening.stderr
    morning = run_at(moving, "2026-11-25T10:00:00-05:00")
    assert morning.returncode == 0, morning.stderr[-3000:]
    assert lake_days(moving, "AAPL") == [*FINAL_AT_TWO_PM, TODAY]
    # The bars and actions are the same bytes; the news is not compared: articles updated
    # between the two runs' instants differ (the daily news recheck catches up with them).
    assert without_news(lake_hashes(moving)) == without_news(lake_hashes(reference))


def without_news(hashes: dict[str, str]) -> dict[str, str]:
    return {key: digest for key, digest in hashes.items() if not key.startswith("news/")}


def test_real_bars_with_open_or_close_outside_low_high_are_kept_and_flagged(
    reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = ds.dataset(reference / "lake" / "ohlcv", partitioning="hive").to_table()
    above = pc.greater(pc.max_element_wise(table["open"], table["close"]), table["high"])
    below = pc.less(pc.min_element_wise(table["open"], table["close"]), table["low"])
    flagged = pc.sum(pc.or_(above, below)).as_py()
    assert 0 < flagged < 0.01 * table.num_rows
    # Every bar the vendor has for these sessions is in the lake; none was quarantined.
    market, minute = SyntheticMarket(seed=0), Timeframe.parse("1Min")
    sessions = trading_sessions(DAYS[0], DAYS[-1])
    served = sum(len(market.bars(s, day, "sip", minute)) for s in SYMBOLS for day in sessions)
    assert table.num_rows == served
    assert not (reference / "lake" / "quarantine").exists()
    with CheckpointStore(reference / "lake") as store:
        assert sum(entry.flagged_rows for entry in store.all_entries()) == flagged
    assert summary(reference)["partitions"]["flagged_rows"] == flagged
    monkeypatch.chdir(reference)
    settings = load_settings(yaml.safe_load((reference / "config.yaml").read_text()))
    assert sum(status.flagged_rows for status in lake_status(settings)) == flagged


def test_update_fetches_again_what_an_earlier_release_wrote_before_it_was_final(
    after_the_close: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, **THROUGH_NEXT_WEEK)
    # An earlier release, run at 14:00, wrote today's session while it was still trading
    # and the next one as known-empty; a plain rerun would have kept both forever.
    monkeypatch.setenv("MARKETPIPE_NOW", AT_TWO_PM)
    lake = tmp_path / "lake"
    settings = load_settings({**THROUGH_NEXT_WEEK, "symbols": SYMBOLS, "data_dir": str(lake)})
    written = [*FINAL_AT_TWO_PM, TODAY, dt.date(2026, 11, 25)]
    no_finality = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    with CheckpointStore(lake) as store, open_client(settings) as client:
        ingest_days(
            client, store, lake, SYMBOLS, written, stream_settings(settings), now=no_finality
        )
    monkeypatch.setenv("MARKETPIPE_NOW", AFTER_FINAL)
    verify = marketpipe_cli(tmp_path, AFTER_FINAL, "verify")
    assert verify.returncode == 1
    assert verify.stdout.count("written before its session was final") == 2 * 2
    update = subprocess.run(
        marketpipe_command("update", "--workflow", str(ROOT)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=at(AFTER_FINAL),
        timeout=600,
    )
    assert update.returncode == 0, update.stderr[-3000:]
    assert "4 partition(s) had been written before their session was final" in update.stderr
    for symbol in SYMBOLS:
        assert lake_days(tmp_path, symbol) == [*FINAL_AT_TWO_PM, TODAY]
    assert lake_hashes(tmp_path) == lake_hashes(after_the_close)
    assert marketpipe_cli(tmp_path, AFTER_FINAL, "verify").returncode == 0
