"""BaseApiClient: ABC enforcement and pagination driven by next_cursor(), over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt

import pyarrow as pa
import pytest

from marketpipe.connectors import (
    OHLCV,
    OHLCV_SCHEMA,
    BaseApiClient,
    ClientConfig,
    NoRateLimit,
    Page,
    PaginationError,
    RequestSpec,
)
from tests.cursor_server import ScriptedPages, cursor_api


class ItemsClient(BaseApiClient[str]):
    """A toy vendor: ``/items`` pages carry rows and a ``next`` cursor."""

    vendor = "toy"
    dataset = OHLCV

    def build_request(self, query: str, cursor: str | None) -> RequestSpec:
        params = (("symbol", query),) + ((("cursor", cursor),) if cursor else ())
        return RequestSpec(path="/items", params=params, endpoint="items")

    def next_cursor(self, page: Page) -> str | None:
        return page.payload["next"]

    def parse_page(self, page: Page, query: str) -> pa.Table:
        rows = page.payload["rows"]
        return pa.Table.from_pylist(
            [
                {
                    "symbol": query,
                    "timestamp": dt.datetime.fromtimestamp(t, dt.UTC),
                    "open": 1.0,
                    "high": 1.0,
                    "low": 1.0,
                    "close": 1.0,
                    "volume": float(t),
                }
                for t in rows
            ],
            schema=OHLCV_SCHEMA,
        )


def _pages(count: int) -> ScriptedPages:
    pages = {}
    for index in range(count):
        cursor = None if index == 0 else f"c{index}"
        following = f"c{index + 1}" if index + 1 < count else None
        pages[cursor] = {"rows": [index * 10 + k for k in range(3)], "next": following}
    return ScriptedPages(pages)


def _client(url: str) -> ItemsClient:
    return ItemsClient(ClientConfig(base_url=url), rate_limiter=NoRateLimit())


def test_a_vendor_missing_a_required_method_cannot_be_instantiated() -> None:
    class Incomplete(BaseApiClient[str]):
        vendor = "broken"
        dataset = OHLCV

        def build_request(self, query: str, cursor: str | None) -> RequestSpec:
            return RequestSpec(path="/")

        def parse_page(self, page: Page, query: str) -> pa.Table:
            return OHLCV_SCHEMA.empty_table()

    with pytest.raises(TypeError, match="next_cursor"):
        Incomplete(ClientConfig(base_url="https://x.example.com"))  # type: ignore[abstract]


def test_pagination_follows_next_cursor_until_none() -> None:
    script = _pages(4)
    with cursor_api(script) as url, _client(url) as client:
        pages = list(client.paginate("AAPL"))
    assert [page.number for page in pages] == [1, 2, 3, 4]
    assert [page.cursor for page in pages] == [None, "c1", "c2", "c3"]
    assert script.requested == [None, "c1", "c2", "c3"]
    assert [row for page in pages for row in page.payload["rows"]] == [
        0,
        1,
        2,
        10,
        11,
        12,
        20,
        21,
        22,
        30,
        31,
        32,
    ]


def test_pagination_reads_exactly_one_page_ahead_of_the_reader() -> None:
    cursors = [None, "c1", "c2", "c3", "c4"]
    script = _pages(len(cursors))
    with cursor_api(script) as url, _client(url) as client:
        batches = client.fetch_batch("AAPL")
        for taken in range(1, len(cursors) + 1):
            assert next(batches).num_rows == 3
            # Page `taken` is in hand: the request for the next one may be in flight, no more.
            expected = cursors[: taken + 1]
            assert len(script.requested) <= len(expected)
            assert script.wait_for_requests(len(expected)) == expected
        assert next(batches, None) is None
        batches.close()
    assert script.requested == cursors


def test_closing_a_fetch_early_stops_paginating() -> None:
    script = _pages(5)
    with cursor_api(script) as url, _client(url) as client:
        batches = client.fetch_batch("AAPL")
        next(batches)
        batches.close()
        requested_at_close = list(script.requested)
    assert requested_at_close in ([None], [None, "c1"])
    assert script.requested == requested_at_close


def test_a_repeated_cursor_stops_pagination_instead_of_looping() -> None:
    script = ScriptedPages(
        {
            None: {"rows": [1], "next": "a"},
            "a": {"rows": [2], "next": "b"},
            "b": {"rows": [3], "next": "a"},
        }
    )
    with (
        cursor_api(script) as url,
        _client(url) as client,
        pytest.raises(PaginationError, match="same cursor again after page 3"),
    ):
        list(client.paginate("AAPL"))
    assert script.requested == [None, "a", "b"]


def test_sync_and_async_fetch_give_identical_tables() -> None:
    script = _pages(3)

    async def collect(client: ItemsClient) -> list[pa.Table]:
        return [table async for table in client.async_fetch_batch("MSFT")]

    with cursor_api(script) as url, _client(url) as client:
        sync_tables = list(client.fetch_batch("MSFT"))
        async_tables = asyncio.run(collect(client))
    assert len(sync_tables) == 3
    assert pa.concat_tables(sync_tables).equals(pa.concat_tables(async_tables))
    assert all(table.schema.equals(OHLCV_SCHEMA) for table in async_tables)
