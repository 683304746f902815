"""Trades and quotes through MarketPipe: Alpaca's endpoints on the shared transport (over
loopback HTTP to the simulator), a day streamed into its file in row groups, and read back
exactly as alpaca-py reads the same prints."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockQuotesRequest, StockTradesRequest
from pydantic import SecretStr

import marketpipe
from marketpipe.connectors import AuthenticationError, ResponseFormatError
from marketpipe.connectors.tick_conditions import bar_rules
from marketpipe.connectors.ticks import (
    QUOTES_SCHEMA,
    TRADES_SCHEMA,
    AlpacaQuotesClient,
    AlpacaTradesClient,
    TicksQuery,
)
from marketpipe.ingest.ticks import fetch_tick_day
from marketpipe.lake import ticks as lake_ticks
from marketpipe.lake.read_plan import MissingPartitionsError
from marketpipe.lake.s3_store import S3Store
from marketpipe.lake.tick_bars import bars_from_trades
from marketpipe.markettime.calendar import new_york_midnight
from marketpipe.simulator import FaultConfig, SimulatorServer
from tests.conftest import FakeClock, alpaca_client, start_simulator
from tests.s3_server import S3Server

DAY = dt.date(2024, 2, 5)
WINDOW = TicksQuery(
    symbols=("AAPL", "MSFT"),
    start=dt.datetime(2024, 2, 5, 14, 30, tzinfo=dt.UTC),
    end=dt.datetime(2024, 2, 5, 14, 32, tzinfo=dt.UTC),
)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    simulator = start_simulator()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_pages_reach_the_end_sync_and_async_alike(server: SimulatorServer) -> None:
    with alpaca_client(server, client_class=AlpacaTradesClient, page_size=100) as client:
        tables = list(client.fetch_batch(WINDOW))

        async def gather() -> list[pa.Table]:
            return [table async for table in client.async_fetch_batch(WINDOW)]

        async_tables = asyncio.run(gather())
    trades = pa.concat_tables(tables)
    assert len(tables) > 2 and trades.schema == TRADES_SCHEMA
    assert trades.equals(pa.concat_tables(async_tables))
    assert set(trades["symbol"].to_pylist()) == {"AAPL", "MSFT"}
    with alpaca_client(server, client_class=AlpacaQuotesClient) as client:
        quotes = pa.concat_tables(list(client.fetch_batch(WINDOW)))
    assert quotes.schema == QUOTES_SCHEMA and quotes.num_rows > trades.num_rows


def test_an_empty_range_is_an_empty_canonical_table(server: SimulatorServer) -> None:
    saturday = new_york_midnight(dt.date(2024, 2, 3))
    query = TicksQuery(symbols=("AAPL",), start=saturday, end=saturday + dt.timedelta(hours=12))
    with alpaca_client(server, client_class=AlpacaTradesClient) as client:
        tables = list(client.fetch_batch(query))
    assert pa.concat_tables(tables).num_rows == 0 and tables[0].schema == TRADES_SCHEMA


def test_transient_faults_are_retried_and_the_result_is_exact(
    server: SimulatorServer, clock: FakeClock
) -> None:
    with alpaca_client(server, client_class=AlpacaTradesClient, page_size=100) as client:
        clean = pa.concat_tables(list(client.fetch_batch(WINDOW)))
    faults = ("500", "503", "429", "reset", "truncate", "invalid_json")
    flaky = start_simulator(faults=FaultConfig(sequence=faults))
    try:
        with alpaca_client(
            flaky, clock, client_class=AlpacaTradesClient, page_size=100, max_attempts=7
        ) as client:
            retried = pa.concat_tables(list(client.fetch_batch(WINDOW)))
        counts = flaky.request_log.counts()
    finally:
        flaky.stop()
    assert retried.equals(clean)
    pages = counts["requests"] // 7
    assert pages > 2 and counts["by_fault"] == {kind: pages for kind in faults}


def test_a_malformed_page_and_a_wrong_key_fail_clearly(server: SimulatorServer) -> None:
    from marketpipe.connectors.ticks import ticks_table

    with pytest.raises(ResponseFormatError, match="lacks 'p'"):
        ticks_table("trades", {"AAPL": [{"t": "2024-02-05T14:30:00Z", "s": 1}]}, "trades page 1")
    strict = start_simulator(key_id="right", secret_key="right-secret")
    try:
        with (
            alpaca_client(
                strict,
                client_class=AlpacaQuotesClient,
                key_id=SecretStr("right"),
                secret_key=SecretStr("wrong-secret"),
            ) as client,
            pytest.raises(AuthenticationError) as raised,
        ):
            list(client.fetch_batch(WINDOW))
    finally:
        strict.stop()
    assert "APCA_API_SECRET_KEY" in str(raised.value) and "wrong-secret" not in str(raised.value)


def test_a_day_streams_into_row_groups_and_reads_back_as_alpaca_py_reads_it(
    server: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_ticks, "ROW_GROUP_ROWS", 50_000)
    with alpaca_client(server, client_class=AlpacaTradesClient, page_size=7_000) as client:
        written = fetch_tick_day(client, tmp_path, "AAPL", DAY)
    path = tmp_path / written.key
    assert written.key == "trades/symbol=AAPL/year=2024/month=02/day=05/trades.parquet"
    stored = pq.ParquetFile(path)
    groups = [stored.metadata.row_group(i).num_rows for i in range(stored.num_row_groups)]
    assert sum(groups) == written.rows and groups[:-1] == [50_000] * (len(groups) - 1)
    assert not list(tmp_path.rglob("*.tmp"))
    # The same bytes whatever the page size: row groups do not follow the pages.
    with alpaca_client(server, client_class=AlpacaTradesClient, page_size=10_000) as client:
        again = fetch_tick_day(client, tmp_path / "again", "AAPL", DAY)
    assert again.sha256 == written.sha256
    trades = marketpipe.read_trades("AAPL", DAY, DAY, data_dir=tmp_path)
    client = StockHistoricalDataClient("demo", "demo", url_override=server.url)
    start, end = new_york_midnight(DAY), new_york_midnight(DAY + dt.timedelta(days=1))
    theirs = client.get_stock_trades(
        StockTradesRequest(
            symbol_or_symbols="AAPL", start=start, end=end - dt.timedelta(microseconds=1)
        )
    ).data["AAPL"]
    assert trades.num_rows == len(theirs) == written.rows
    ours = trades.select(["price", "size", "exchange", "id", "conditions", "tape"]).to_pylist()
    assert ours == [
        {
            "price": t.price,
            "size": t.size,
            "exchange": t.exchange,
            "id": t.id,
            "conditions": t.conditions,
            "tape": t.tape,
        }
        for t in theirs
    ]
    # alpaca-py's timestamps stop at microseconds; the lake keeps the nanoseconds.
    epoch, microsecond = dt.datetime(1970, 1, 1, tzinfo=dt.UTC), dt.timedelta(microseconds=1)
    stamps = trades["timestamp"].cast(pa.int64()).to_pylist()
    assert [stamp // 1000 for stamp in stamps] == [
        (t.timestamp - epoch) // microsecond for t in theirs
    ]
    assert any(stamp % 1000 for stamp in stamps)


def test_quotes_of_a_window_read_back_exactly_and_missing_days_are_named(
    server: SimulatorServer, tmp_path: Path
) -> None:
    with alpaca_client(server, client_class=AlpacaQuotesClient) as client:
        written = fetch_tick_day(client, tmp_path, "MSFT", DAY)
    quotes = marketpipe.read_quotes(
        "MSFT", DAY, DAY, data_dir=tmp_path, columns=["bid_price", "ask_price"]
    )
    assert quotes.column_names == ["symbol", "bid_price", "ask_price"]
    assert quotes.num_rows == written.rows
    assert all(row["bid_price"] < row["ask_price"] for row in quotes.to_pylist()[:1000])
    client = StockHistoricalDataClient("demo", "demo", url_override=server.url)
    start = dt.datetime(2024, 2, 5, 15, 0, tzinfo=dt.UTC)
    end = dt.datetime(2024, 2, 5, 15, 1, tzinfo=dt.UTC)
    window = StockQuotesRequest(symbol_or_symbols="MSFT", start=start, end=end)
    theirs = client.get_stock_quotes(window).data["MSFT"]
    lazy = marketpipe.scan_ticks("quotes", "MSFT", DAY, DAY, data_dir=tmp_path).to_table()
    in_window = [
        (row["bid_price"], row["ask_price"], row["bid_size"], row["ask_exchange"])
        for row in lazy.to_pylist()
        if start <= row["timestamp"] <= end
    ]
    assert in_window == [(q.bid_price, q.ask_price, q.bid_size, q.ask_exchange) for q in theirs]
    with pytest.raises(MissingPartitionsError, match="MSFT 2024-02-06"):
        marketpipe.read_quotes("MSFT", DAY, dt.date(2024, 2, 6), data_dir=tmp_path)


def test_a_tick_day_goes_to_an_s3_lake_whole_and_reads_back_the_same(
    server: SimulatorServer,
    s3_api: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3_api.point_here(monkeypatch)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    store = S3Store(uri, s3_api.url)
    with alpaca_client(server, client_class=AlpacaTradesClient) as client:
        local = fetch_tick_day(client, tmp_path, "AAPL", DAY)
        remote = fetch_tick_day(client, store, "AAPL", DAY)
    assert (remote.key, remote.rows, remote.sha256) == (local.key, local.rows, local.sha256)
    assert lake_ticks.present_tick_days(store, "trades", ["AAPL"]) == {("AAPL", DAY)}
    ours = marketpipe.read_trades("AAPL", DAY, DAY, data_dir=uri)
    assert ours.equals(marketpipe.read_trades("AAPL", DAY, DAY, data_dir=tmp_path))
    lazy = marketpipe.scan_ticks("trades", "AAPL", DAY, DAY, data_dir=uri)
    assert lazy.count_rows() == local.rows


def test_bars_from_trades_count_what_the_vendors_conditions_let_count() -> None:
    minute = dt.datetime(2024, 2, 5, 14, 30, tzinfo=dt.UTC)
    prints = [  # (seconds into the minute, price, size, conditions)
        (1, 10.00, 100, ["@"]),
        (2, 12.00, 5, ["I"]),  # odd lot: in no field
        (3, 10.50, 200, ["@"]),
        (4, 9.00, 100, ["4"]),  # derivatively priced: not the low
        (5, 9.80, 100, ["@"]),
        (61, 11.00, 50, ["@"]),
    ]
    trades = pa.table(
        {
            "symbol": ["MSFT"] * len(prints),
            "timestamp": pa.array(
                [minute + dt.timedelta(seconds=s) for s, *_ in prints], pa.timestamp("ns", "UTC")
            ),
            "price": [p for _, p, _, _ in prints],
            "size": [float(z) for _, _, z, _ in prints],
            "conditions": [c for *_, c in prints],
        }
    )
    bars = bars_from_trades(trades, bar_rules("demo")).to_pylist()
    assert [(b["open"], b["high"], b["low"], b["close"]) for b in bars] == [
        (10.0, 10.5, 9.8, 9.8),
        (11.0, 11.0, 11.0, 11.0),
    ]
    assert [(b["volume"], b["trade_count"]) for b in bars] == [(500.0, 4), (50.0, 1)]
    assert bars[0]["vwap"] == round((1000 + 2100 + 900 + 980) / 500, 4)
    assert bars[0]["timestamp"] == minute
    with pytest.raises(ValueError, match="no trade-condition rules for vendor 'other'"):
        bar_rules("other")


def test_tick_symbols_must_be_among_the_configured_ones(tmp_path: Path) -> None:
    from marketpipe.workflow.config import WorkflowConfig

    config = {"symbols": ["AAPL"], "start": "2024-01-02", "end": "2024-01-03"}
    chosen = WorkflowConfig.model_validate({**config, "trades": {"fetch": True}})
    assert chosen.trades.fetch and chosen.trades.symbols is None and not chosen.quotes.fetch
    with pytest.raises(ValueError, match=r"quotes.symbols names NVDA, not among the configured"):
        WorkflowConfig.model_validate({**config, "quotes": {"fetch": True, "symbols": ["NVDA"]}})
