"""AlpacaClient against the simulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import re

import pyarrow as pa
import pytest
import requests

from marketpipe.connectors import OHLCV_SCHEMA, ApiError, ResponseFormatError
from marketpipe.connectors.alpaca import bars_table
from marketpipe.simulator import SimulatorServer
from tests.conftest import alpaca_client, bars_query, expected_bars, start_simulator, utc


def table_rows(table: pa.Table) -> list[tuple]:
    columns = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    data = table.select(columns).to_pydict()
    return list(zip(*(data[name] for name in columns), strict=True))


def test_multi_symbol_pagination_with_a_symbol_spanning_pages(simulator: SimulatorServer) -> None:
    query = bars_query(("MSFT", "AAPL", "SPY"))
    with alpaca_client(simulator, page_size=700) as client:
        pages = list(client.paginate(query))
        simulator.request_log.clear()
        tables = list(client.fetch_batch(query))
    expected = expected_bars(simulator, query)
    assert len(expected) > 2 * 700
    assert table_rows(pa.concat_tables(tables)) == expected
    assert all(table.schema.equals(OHLCV_SCHEMA) for table in tables)
    # limit counts across symbols: every page but the last is full.
    assert [t.num_rows for t in tables[:-1]] == [700] * (len(tables) - 1)
    # Some symbol's bars continue from one page onto the next.
    spans = [set(a.payload["bars"]) & set(b.payload["bars"]) for a, b in itertools.pairwise(pages)]
    assert any(spans)
    # Pages are ordered by symbol, then time.
    seen = [symbol for page in pages for symbol in page.payload["bars"]]
    assert seen == sorted(seen)
    assert len(simulator.request_log.entries) == len(tables)


def test_request_carries_alpaca_parameters(simulator: SimulatorServer) -> None:
    query = bars_query(("AAPL",), feed="iex", adjustment="split,dividend", timeframe="5T")
    with alpaca_client(simulator, page_size=10_000) as client:
        list(client.fetch_batch(query))
    params = simulator.request_log.entries[0].params
    assert params == {
        "symbols": "AAPL",
        "timeframe": "5Min",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-03T05:00:00Z",
        "limit": "10000",
        "adjustment": "split,dividend",
        "feed": "iex",
    }


def test_no_bars_at_all_gives_an_empty_table_from_bars_empty_map(
    simulator: SimulatorServer,
) -> None:
    weekend = bars_query(("AAPL", "MSFT"), start=utc(2024, 1, 6, 5), end=utc(2024, 1, 7, 23))
    raw = requests.get(
        f"{simulator.url}/v2/stocks/bars",
        params={
            "symbols": "AAPL,MSFT",
            "timeframe": "1Min",
            "start": "2024-01-06T05:00:00Z",
            "end": "2024-01-07T23:00:00Z",
        },
        headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"},
        timeout=5,
    ).json()
    assert raw["bars"] == {} and raw["next_page_token"] is None
    with alpaca_client(simulator) as client:
        tables = list(client.fetch_batch(weekend))
    assert [t.num_rows for t in tables] == [0]
    assert tables[0].schema.equals(OHLCV_SCHEMA)


def test_single_symbol_endpoint_including_bars_null(simulator: SimulatorServer) -> None:
    with alpaca_client(simulator, page_size=500) as client:
        single = pa.concat_tables(client.fetch_batch(bars_query(endpoint="single")))
        multi = pa.concat_tables(client.fetch_batch(bars_query()))
        holiday = bars_query(endpoint="single", start=utc(2024, 1, 15), end=utc(2024, 1, 16, 5))
        empty = list(client.fetch_batch(holiday))
    assert single.equals(multi)
    assert [t.num_rows for t in empty] == [0]
    assert simulator.request_log.entries[-1].path == "/v2/stocks/AAPL/bars"


def test_symbols_omitted_from_a_page_are_simply_absent(simulator: SimulatorServer) -> None:
    # ZZZZ gets bars; a page holding only one symbol omits the others entirely.
    query = bars_query(("AAPL", "ZZZZ"))
    with alpaca_client(simulator, page_size=300) as client:
        pages = list(client.paginate(query))
    assert any(list(page.payload["bars"]) == ["AAPL"] for page in pages)
    assert any(list(page.payload["bars"]) == ["ZZZZ"] for page in pages)


def test_whole_number_prices_and_gzip_bodies_parse(simulator: SimulatorServer) -> None:
    query = bars_query(("AAPL", "MSFT", "SPY"), end=utc(2024, 1, 10))
    raw = requests.get(
        f"{simulator.url}/v2/stocks/bars",
        params={
            "symbols": "AAPL,MSFT,SPY",
            "timeframe": "1Min",
            "limit": "10000",
            "start": "2024-01-02T00:00:00Z",
            "end": "2024-01-10T00:00:00Z",
        },
        headers={"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s", "Accept-Encoding": "gzip"},
        timeout=5,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert re.search(rb'"[ohlc]":\d+,', raw.content), "expected a whole-number price"
    with alpaca_client(simulator) as client:
        table = pa.concat_tables(client.fetch_batch(query))
    assert table_rows(table) == expected_bars(simulator, query)
    assert table.schema.field("open").type == pa.float64()


def test_fractional_second_timestamps_parse() -> None:
    server = start_simulator(fractional_timestamps=True)
    try:
        with alpaca_client(server) as client:
            table = pa.concat_tables(client.fetch_batch(bars_query()))
        assert table_rows(table) == expected_bars(server, bars_query())
    finally:
        server.stop()
    parsed = bars_table(
        [
            (
                "AAPL",
                [
                    {
                        "t": "2024-01-02T09:00:00.123456789Z",
                        "o": 1,
                        "h": 2,
                        "l": 1,
                        "c": 2,
                        "v": 5,
                        "n": 1,
                        "vw": 1.5,
                    }
                ],
            )
        ],
        "test",
    )
    assert parsed.column("timestamp")[0].value == 1704186000123456789


def test_sync_and_async_fetch_are_identical(simulator: SimulatorServer) -> None:
    query = bars_query(("AAPL", "MSFT"), end=utc(2024, 1, 5))

    async def collect() -> list[pa.Table]:
        with alpaca_client(simulator, page_size=1000) as client:
            return [table async for table in client.async_fetch_batch(query)]

    with alpaca_client(simulator, page_size=1000) as client:
        sync_tables = list(client.fetch_batch(query))
    async_tables = asyncio.run(collect())
    assert len(sync_tables) == len(async_tables) > 3
    for left, right in zip(sync_tables, async_tables, strict=True):
        assert left.equals(right)


def test_bad_parameters_fail_at_once_with_the_vendor_message(simulator: SimulatorServer) -> None:
    with alpaca_client(simulator) as client:
        spec = client.build_request(bars_query(), None)
        broken = type(spec)(path=spec.path, params=(*spec.params, ("bogus", "1")))
        with pytest.raises(ApiError, match="unexpected query parameter") as info:
            client.transport.send(broken)
    assert info.value.status == 400
    assert len(simulator.request_log.entries) == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"next_page_token": None}, "with a 'bars' key"),
        ({"bars": {"AAPL": [{"t": "2024-01-02T09:00:00Z", "o": 1}]}}, "lacks field 'h'"),
        (
            {"bars": {"AAPL": [{"t": "yesterday", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]}},
            "malformed value",
        ),
        (
            {
                "bars": {
                    "AAPL": [{"t": "2024-01-02T09:00:00", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}]
                }
            },
            "malformed value",
        ),
        ({"bars": 5}, "not a map"),
    ],
)
def test_malformed_pages_raise_a_format_error(payload: dict, message: str) -> None:
    from marketpipe.connectors import AlpacaClient, AlpacaConfig, Page, Response
    from marketpipe.connectors.transport import RequestSpec

    client = AlpacaClient(AlpacaConfig(key_id="k", secret_key="s"))
    response = Response(200, {}, payload, 0, 1, 0.0)
    page = Page(1, None, RequestSpec(path="/v2/stocks/bars", endpoint="stocks/bars"), response)
    with pytest.raises(ResponseFormatError, match=message):
        client.parse_page(page, bars_query())


def test_null_bar_list_for_a_symbol_is_tolerated() -> None:
    table = bars_table([("AAPL", None)], "test")
    assert table.num_rows == 0
