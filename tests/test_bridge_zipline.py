"""The lake as a zipline-reloaded bundle: ingested by zipline, read back with its own bar and
adjustment readers, and run through a buy-and-hold algorithm (the ``backtest`` extra)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from zipline import run_algorithm
from zipline.api import order, set_commission, set_slippage, symbol
from zipline.data import bundles
from zipline.finance import commission, slippage

from marketpipe.bridges.zipline import register_bundle
from marketpipe.lake.reader import read_bars
from marketpipe.markettime.calendar import NEW_YORK
from tests.securities_book import SECURITIES
from tests.workflow_support import snakemake, write_config

FIRST, LAST = dt.date(2024, 2, 5), dt.date(2024, 2, 16)  # AAPL: dividend 02-09, 4:1 split 02-12


@pytest.fixture(scope="module")
def bundle(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The reference lake's AAPL and MSFT ingested as a bundle of their own zipline root."""
    name = f"marketpipe-{uuid.uuid4().hex[:8]}"
    environ = {"ZIPLINE_ROOT": str(tmp_path_factory.mktemp("zipline"))}
    register_bundle(
        name, data_dir=reference / "lake", symbols=["AAPL", "MSFT"], start=FIRST, end=LAST
    )
    try:
        bundles.ingest(name, environ=environ, show_progress=False)
        yield name, environ
    finally:
        bundles.unregister(name)


def regular_minutes(reference: Path, ticker: str) -> pa.Table:
    return read_bars(ticker, FIRST, LAST, data_dir=reference / "lake", session="regular")


def test_zipline_reads_the_lakes_regular_minutes_labelled_by_their_close(
    reference: Path, bundle: tuple[str, dict[str, str]]
) -> None:
    name, environ = bundle
    data = bundles.load(name, environ=environ)
    assets = data.asset_finder.retrieve_all(data.asset_finder.sids)
    assert [asset.symbol for asset in assets] == ["AAPL", "MSFT"]
    reader = data.equity_minute_bar_reader
    for asset in assets:
        lake = regular_minutes(reference, asset.symbol)
        start = pd.Timestamp(lake["timestamp"][0].as_py()) + pd.Timedelta(minutes=1)
        end = pd.Timestamp(lake["timestamp"][-1].as_py()) + pd.Timedelta(minutes=1)
        fields = ["open", "high", "low", "close", "volume"]
        arrays = reader.load_raw_arrays(fields, start, end, [asset.sid])
        minutes = reader.calendar.minutes_in_range(start, end)
        stored = {
            minute: tuple(float(array[index][0]) for array in arrays)
            for index, minute in enumerate(minutes)
            if arrays[-1][index][0] > 0 or arrays[3][index][0] > 0
        }
        expected = {
            pd.Timestamp(bar["timestamp"]) + pd.Timedelta(minutes=1): tuple(
                round(bar[field], 3) for field in fields
            )
            for bar in lake.to_pylist()
        }
        assert sorted(stored) == sorted(expected)
        assert all(stored[minute] == pytest.approx(bar) for minute, bar in expected.items())
        first_label = min(stored).tz_convert(NEW_YORK)
        assert (first_label.hour, first_label.minute) == (9, 31)  # the lake's 09:30 bar


def test_daily_bars_roll_up_the_same_minutes_and_adjustments_come_from_the_lake(
    reference: Path, bundle: tuple[str, dict[str, str]]
) -> None:
    name, environ = bundle
    data = bundles.load(name, environ=environ)
    aapl = data.asset_finder.lookup_symbol("AAPL", as_of_date=None)
    daily = read_bars(
        "AAPL", FIRST, LAST, data_dir=reference / "lake", session="regular", timeframe="1Day"
    )
    for bar in daily.to_pylist():
        session = pd.Timestamp(bar["timestamp"].astimezone(NEW_YORK).date())
        close = data.equity_daily_bar_reader.get_value(aapl.sid, session, "close")
        volume = data.equity_daily_bar_reader.get_value(aapl.sid, session, "volume")
        assert (close, volume) == (pytest.approx(round(bar["close"], 3)), bar["volume"])
    ((split_day, ratio),) = data.adjustment_reader.get_adjustments_for_sid("splits", aapl.sid)
    assert (split_day, ratio) == (pd.Timestamp("2024-02-12"), 0.25)  # 4-for-1
    ((dividend_day, _),) = data.adjustment_reader.get_adjustments_for_sid("dividends", aapl.sid)
    assert dividend_day == pd.Timestamp("2024-02-09")


def test_a_buy_and_hold_algorithm_fills_at_the_lakes_prices(
    reference: Path, bundle: tuple[str, dict[str, str]]
) -> None:
    name, environ = bundle

    def initialize(context: Any) -> None:
        context.bought = False
        set_slippage(slippage.FixedSlippage(spread=0.0))
        set_commission(commission.PerShare(cost=0.0, min_trade_cost=0.0))

    def handle_data(context: Any, data: Any) -> None:
        if not context.bought:
            order(symbol("AAPL"), 10)
            context.bought = True

    sessions = pd.date_range(FIRST, LAST, freq="B")
    performance = run_algorithm(
        start=pd.Timestamp(FIRST),
        end=pd.Timestamp(LAST),
        initialize=initialize,
        handle_data=handle_data,
        capital_base=100_000,
        data_frequency="minute",
        bundle=name,
        environ=environ,
        benchmark_returns=pd.Series(0.0, index=sessions.tz_localize("UTC")),
    )
    fills = [fill for day in performance["transactions"] for fill in day]
    (fill,) = fills
    # Ordered on zipline's first minute (09:31, the lake's 09:30 bar), filled on the next
    # one at its close: the lake's 09:31 bar's close.
    lake = regular_minutes(reference, "AAPL")
    second = lake.filter(pc.equal(lake["timestamp"], lake["timestamp"][1]))
    assert fill["amount"] == 10
    assert fill["price"] == pytest.approx(round(second["close"][0].as_py(), 3))
    assert pd.Timestamp(fill["dt"]) == pd.Timestamp(lake["timestamp"][1].as_py()) + pd.Timedelta(
        minutes=1
    )


def test_a_renamed_security_is_one_asset_under_each_of_its_tickers(tmp_path: Path) -> None:
    # The simulator renames FB to META on 2022-06-09; the lake keeps the series as META.
    meta = [record for record in SECURITIES if record["name"].startswith("Meta")]
    write_config(
        tmp_path, symbols=["META"], start="2022-06-06", end="2022-06-10", demo={"securities": meta}
    )
    result = snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    name = f"marketpipe-{uuid.uuid4().hex[:8]}"
    environ = {"ZIPLINE_ROOT": str(tmp_path / "zipline")}
    register_bundle(name, data_dir=tmp_path / "lake")
    try:
        bundles.ingest(name, environ=environ, show_progress=False)
        finder = bundles.load(name, environ=environ).asset_finder
        facebook = finder.lookup_symbol("FB", as_of_date=pd.Timestamp("2022-06-08"))
        meta_platforms = finder.lookup_symbol("META", as_of_date=pd.Timestamp("2022-06-10"))
    finally:
        bundles.unregister(name)
    assert facebook.sid == meta_platforms.sid
    assert (facebook.start_date, facebook.end_date) == (
        pd.Timestamp("2022-06-06"),
        pd.Timestamp("2022-06-10"),
    )
