"""The simulator's corporate actions: splits move its raw bars, and ``adjustment=`` follows
Alpaca's method with what the vendor knows at the request. Over real loopback HTTP."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from marketpipe.connectors.alpaca import BarsQuery
from marketpipe.markettime.calendar import NEW_YORK, new_york_midnight, trading_sessions
from marketpipe.simulator import SimulatorServer
from marketpipe.simulator.actions import DEMO_CORPORATE_ACTIONS, load_corporate_actions
from marketpipe.simulator.cli import build_parser, config_from_args
from tests.conftest import alpaca_client, start_simulator

LATER = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
SPLIT_EX = dt.date(2024, 2, 12)  # the demo AAPL 4:1 split
DIVIDEND_EX = dt.date(2024, 2, 9)  # the demo AAPL 0.24 cash dividend


def bars(
    server: SimulatorServer, day: dt.date, adjustment: str = "raw", timeframe: str = "1Min"
) -> list[dict[str, Any]]:
    """AAPL's bars of one session from ``server``."""
    (session,) = trading_sessions(day, day)
    end = session.extended_window("sip")[1] - dt.timedelta(minutes=1)
    query = BarsQuery(
        symbols=("AAPL",),
        timeframe=timeframe,
        start=new_york_midnight(day),
        end=end,
        adjustment=adjustment,
    )
    with alpaca_client(server) as client:
        return pa.concat_tables(client.fetch_batch(query)).to_pylist()


def regular_close(rows: list[dict[str, Any]], day: dt.date) -> float:
    """The close of the last bar before 16:00 New York (every demo day is a full session)."""
    close = dt.datetime.combine(day, dt.time(16), NEW_YORK)
    return [row for row in rows if row["timestamp"] < close][-1]["close"]


@pytest.fixture(scope="module")
def servers() -> Any:
    """The demo market with its actions, the same market without any, both at LATER."""
    with_actions = start_simulator(market_now=LATER, seed=0)
    without = start_simulator(market_now=LATER, seed=0, corporate_actions=())
    yield with_actions, without
    with_actions.stop()
    without.stop()


def test_a_split_divides_raw_prices_and_multiplies_volume_from_its_ex_date(servers) -> None:
    with_actions, without = servers
    before = dt.date(2024, 2, 8)
    assert bars(with_actions, before) == bars(without, before)
    split_day, unsplit_day = bars(with_actions, SPLIT_EX), bars(without, SPLIT_EX)
    assert [row["timestamp"] for row in split_day] == [row["timestamp"] for row in unsplit_day]
    for split, unsplit in zip(split_day, unsplit_day, strict=True):
        for price in ("open", "high", "low", "close"):
            # Ticks and the few out-of-range opens and closes are cents on the new scale.
            assert split[price] == pytest.approx(unsplit[price] / 4, abs=0.06)
            assert round(split[price], 2) == split[price]  # still quoted in cents
        assert split["volume"] == pytest.approx(unsplit["volume"] * 4, abs=2)


def test_split_adjustment_scales_earlier_sessions_only(servers) -> None:
    server, _ = servers
    day = dt.date(2024, 2, 7)
    raw, adjusted = bars(server, day), bars(server, day, "split")
    for plain, scaled in zip(raw, adjusted, strict=True):
        for price in ("open", "high", "low", "close", "vwap"):
            assert scaled[price] == pytest.approx(plain[price] / 4, rel=1e-12)
        assert scaled["volume"] == plain["volume"] * 4
        assert scaled["trade_count"] == plain["trade_count"]
    assert bars(server, SPLIT_EX, "split") == bars(server, SPLIT_EX)


def test_dividend_adjustment_uses_the_close_before_the_ex_date(servers) -> None:
    server, _ = servers
    day = dt.date(2024, 2, 7)
    close = regular_close(bars(server, dt.date(2024, 2, 8)), dt.date(2024, 2, 8))
    factor = 1 - 0.24 / close
    raw, adjusted = bars(server, day), bars(server, day, "dividend")
    for plain, scaled in zip(raw, adjusted, strict=True):
        assert scaled["close"] == pytest.approx(plain["close"] * factor, rel=1e-12)
        assert scaled["volume"] == plain["volume"]
    assert bars(server, DIVIDEND_EX, "dividend") == bars(server, DIVIDEND_EX)
    both = bars(server, day, "all")
    assert both == bars(server, day, "split,dividend")
    for plain, scaled in zip(raw, both, strict=True):
        assert scaled["close"] == pytest.approx(plain["close"] * factor / 4, rel=1e-12)


def test_only_actions_processed_by_the_request_count() -> None:
    # 2024-02-13: the split (processed 02-12) is known, the dividend (processed 02-15) not.
    server = start_simulator(market_now=dt.datetime(2024, 2, 13, 23, tzinfo=dt.UTC), seed=0)
    try:
        day = dt.date(2024, 2, 7)
        raw = bars(server, day)
        assert bars(server, day, "dividend") == raw
        assert [row["close"] for row in bars(server, day, "all")] == pytest.approx(
            [row["close"] / 4 for row in raw], rel=1e-12
        )
    finally:
        server.stop()


def test_wider_bars_are_adjusted_like_their_minutes(servers) -> None:
    server, _ = servers
    day = dt.date(2024, 2, 7)
    (daily,) = bars(server, day, "split", timeframe="1Day")
    (raw_daily,) = bars(server, day, timeframe="1Day")
    assert daily["close"] == pytest.approx(raw_daily["close"] / 4, rel=1e-12)
    assert daily["volume"] == raw_daily["volume"] * 4


def test_demo_actions_have_a_split_and_a_cash_dividend_of_one_shipped_symbol() -> None:
    in_range = [
        (group, record["symbol"])
        for group, record in DEMO_CORPORATE_ACTIONS
        if "2024-01-02" <= record["ex_date"] <= "2024-02-29"
    ]
    assert ("forward_splits", "AAPL") in in_range
    assert ("cash_dividends", "AAPL") in in_range


def test_actions_file_for_the_cli_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "actions.json"
    path.write_text(
        json.dumps(
            {
                "reverse_splits": [
                    {
                        "id": "r1",
                        "symbol": "MSFT",
                        "old_rate": 10,
                        "new_rate": 1,
                        "ex_date": "2024-01-10",
                        "process_date": "2024-01-10",
                    }
                ]
            }
        )
    )
    config = config_from_args(build_parser().parse_args(["--corporate-actions", str(path)]))
    assert config.corporate_actions == load_corporate_actions(path)
    path.write_text(
        json.dumps(
            {
                "forward_splits": [
                    {
                        "id": "bad",
                        "symbol": "AAPL",
                        "old_rate": 1,
                        "new_rate": 0,
                        "ex_date": "2024-01-10",
                        "process_date": "2024-01-10",
                    }
                ]
            }
        )
    )
    with pytest.raises(ValueError, match="'bad': new_rate must be a number > 0"):
        load_corporate_actions(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected"):
        load_corporate_actions(path)
