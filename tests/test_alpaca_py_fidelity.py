"""Fidelity: the official alpaca-py SDK, pointed at the simulator, sees the same bars."""

from __future__ import annotations

import datetime as dt
import warnings

import pyarrow as pa
import pytest

from marketpipe.simulator import SimulatorServer
from tests.conftest import alpaca_client, bars_query, utc

alpaca_historical = pytest.importorskip("alpaca.data.historical")
alpaca_requests = pytest.importorskip("alpaca.data.requests")
alpaca_timeframe = pytest.importorskip("alpaca.data.timeframe")
alpaca_enums = pytest.importorskip("alpaca.data.enums")


def _sdk_rows(
    server: SimulatorServer,
    symbols: list[str],
    start: dt.datetime,
    end: dt.datetime,
    timeframe: object,
    feed: str,
) -> list[tuple]:
    client = alpaca_historical.StockHistoricalDataClient("demo", "demo", url_override=server.url)
    request = alpaca_requests.StockBarsRequest(
        symbol_or_symbols=symbols,
        timeframe=timeframe,
        start=start,
        end=end,
        feed=alpaca_enums.DataFeed(feed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        barset = client.get_stock_bars(request)
    rows = []
    for symbol in sorted(barset.data):
        for bar in barset.data[symbol]:
            rows.append(
                (
                    symbol,
                    bar.timestamp,
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                    bar.trade_count,
                    bar.vwap,
                )
            )
    return rows


def _our_rows(table: pa.Table) -> list[tuple]:
    data = table.to_pydict()
    names = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    return list(zip(*(data[name] for name in names), strict=True))


@pytest.mark.parametrize(
    ("timeframe", "feed", "start", "end"),
    [
        (alpaca_timeframe.TimeFrame.Minute, "sip", utc(2024, 3, 8), utc(2024, 3, 12, 3)),
        (
            alpaca_timeframe.TimeFrame(15, alpaca_timeframe.TimeFrameUnit.Minute),
            "iex",
            utc(2024, 11, 27),
            utc(2024, 12, 3),
        ),
        (alpaca_timeframe.TimeFrame.Day, "sip", utc(2024, 1, 1), utc(2024, 3, 1)),
    ],
)
def test_alpaca_py_and_marketpipe_return_the_same_bars(
    simulator: SimulatorServer, timeframe: object, feed: str, start: dt.datetime, end: dt.datetime
) -> None:
    symbols = ["MSFT", "AAPL", "SPY"]
    sdk = _sdk_rows(simulator, symbols, start, end, timeframe, feed)
    query = bars_query(tuple(symbols), start=start, end=end, timeframe=str(timeframe), feed=feed)
    with alpaca_client(simulator) as client:
        ours = _our_rows(pa.concat_tables(client.fetch_batch(query)))
    assert len(sdk) > 100 or str(timeframe) == "1Day"
    assert ours == sdk


def test_alpaca_py_pages_through_a_symbol_spanning_pages(simulator: SimulatorServer) -> None:
    start, end = utc(2024, 1, 2), utc(2024, 1, 20)
    sdk = _sdk_rows(
        simulator, ["AAPL", "MSFT"], start, end, alpaca_timeframe.TimeFrame.Minute, "sip"
    )
    requests_made = len(simulator.request_log.entries)
    assert len(sdk) > 10_000 and requests_made >= 2
    with alpaca_client(simulator) as client:
        query = bars_query(("AAPL", "MSFT"), start=start, end=end)
        assert _our_rows(pa.concat_tables(client.fetch_batch(query))) == sdk
