"""Keeping stored corporate actions current, against the simulator over loopback HTTP."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from marketpipe.connectors import AlpacaClient, AlpacaConfig, CorporateActionsClient
from marketpipe.ingest.actions import ActionsReport, sync_corporate_actions
from marketpipe.lake.actions import actions_path, read_actions
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SimulatorServer, SyntheticMarket
from marketpipe.simulator.actions import DEMO_CORPORATE_ACTIONS
from tests.conftest import start_simulator

START = dt.date(2024, 1, 2)
LATER = dt.datetime(2026, 12, 1, 17, tzinfo=dt.UTC)


def sync(
    server: SimulatorServer,
    lake: Path,
    symbols: list[str],
    now: dt.datetime,
    recheck_days: int = 30,
) -> ActionsReport:
    keys = {"key_id": SecretStr("demo"), "secret_key": SecretStr("demo")}
    config = AlpacaConfig(base_url=server.url, requests_per_minute=10_000, **keys)
    with CorporateActionsClient(config) as actions, AlpacaClient(config) as bars:
        return sync_corporate_actions(
            actions,
            bars,
            lake,
            lake,
            symbols,
            START,
            now,
            recheck_days=recheck_days,
            settle=dt.timedelta(minutes=30),
            run_id="test",
        )


def action_requests(server: SimulatorServer) -> list[dict[str, str]]:
    return [
        entry.params
        for entry in server.request_log.entries
        if entry.path == "/v1/corporate-actions"
    ]


def test_first_check_asks_since_before_the_start_then_only_a_recent_window(
    tmp_path: Path,
) -> None:
    server = start_simulator(market_now=LATER, seed=0)
    try:
        report = sync(server, tmp_path, ["AAPL", "MSFT", "NVDA"], LATER)
        first = action_requests(server)
        again = sync(server, tmp_path, ["AAPL", "MSFT", "NVDA"], LATER + dt.timedelta(days=1))
        second = action_requests(server)[len(first) :]
    finally:
        server.stop()
    assert [(p["symbols"], p["start"], p["end"]) for p in first] == [
        ("AAPL,MSFT,NVDA", "2023-12-02", "2026-12-01")
    ]
    assert [(p["start"], p["end"]) for p in second] == [("2026-11-01", "2026-12-02")]
    assert sorted(report.written) == ["AAPL", "MSFT", "NVDA"] and again.written == []
    nvda = read_actions(tmp_path, "NVDA")
    assert nvda is not None and nvda.num_rows == 0  # asked, and there were none
    with CheckpointStore(tmp_path) as store:
        entries = store.actions_entries()
    assert entries["AAPL"].covered_from == dt.date(2023, 12, 2)
    assert entries["AAPL"].covered_through == dt.date(2026, 12, 2)
    # Two dividends needed a close: one bars request each, on the first check only.
    assert report.dividends_pending == 0
    bar_requests = [e for e in server.request_log.entries if e.path.endswith("/bars")]
    assert len(bar_requests) == 2


def test_a_file_that_is_not_the_ledgers_is_asked_for_again_in_full(tmp_path: Path) -> None:
    server = start_simulator(market_now=LATER, seed=0)
    try:
        sync(server, tmp_path, ["AAPL"], LATER)
        path = actions_path(tmp_path, "AAPL")
        good = path.read_bytes()
        path.write_bytes(good[:-8])
        report = sync(server, tmp_path, ["AAPL"], LATER)
        starts = [params["start"] for params in action_requests(server)]
    finally:
        server.stop()
    assert starts == ["2023-12-02", "2023-12-02"]
    assert report.written == ["AAPL"] and path.read_bytes() == good


def test_a_malformed_record_fails_its_symbol_alone_and_nothing_of_it_is_stored(
    tmp_path: Path,
) -> None:
    broken = (
        "cash_dividends",
        {"id": "bad", "symbol": "MSFT", "rate": 0.5, "process_date": "2024-02-30"},
    )
    server = start_simulator(
        market_now=LATER, seed=0, corporate_actions=(*DEMO_CORPORATE_ACTIONS, broken)
    )
    try:
        report = sync(server, tmp_path, ["AAPL", "MSFT"], LATER)
    finally:
        server.stop()
    assert list(report.failed) == ["MSFT"]
    assert "cash_dividend record 'bad' is malformed (process_date:" in report.failed["MSFT"]
    assert not actions_path(tmp_path, "MSFT").exists()
    assert read_actions(tmp_path, "AAPL") is not None
    with CheckpointStore(tmp_path) as store:
        assert sorted(store.actions_entries()) == ["AAPL"]


def test_a_dividend_waits_for_a_final_close_and_gets_it_on_a_later_check(tmp_path: Path) -> None:
    # Ex-date Monday 2026-11-30; the session before it is Friday 11-27 (an early close).
    record: dict[str, Any] = {
        "id": "d1",
        "symbol": "SPY",
        "rate": 1.25,
        "process_date": "2026-11-27",
        "ex_date": "2026-11-30",
    }
    friday_afternoon = dt.datetime(2026, 11, 27, 20, 0, tzinfo=dt.UTC)  # 15:00 New York
    server = start_simulator(
        market_now=friday_afternoon, seed=0, corporate_actions=(("cash_dividends", record),)
    )
    try:
        waiting = sync(server, tmp_path, ["SPY"], friday_afternoon)
        stored = read_actions(tmp_path, "SPY")
        assert stored is not None and stored["reference_close"].to_pylist() == [None]
        done = sync(server, tmp_path, ["SPY"], LATER)
    finally:
        server.stop()
    assert waiting.dividends_pending == 1 and done.dividends_pending == 0
    stored = read_actions(tmp_path, "SPY")
    assert stored is not None
    (friday,) = trading_sessions(dt.date(2026, 11, 27), dt.date(2026, 11, 27))
    minutes = SyntheticMarket(0).bars("SPY", friday, "sip", Timeframe.parse("1Min"))
    last_regular = [bar for bar in minutes if bar.t < friday.close.timestamp()][-1]
    assert friday.early_close and stored["reference_close"].to_pylist() == [last_regular.c]
    assert done.written == ["SPY"]
