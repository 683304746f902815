"""The connector contract for Massive's splits, dividends and news, against the simulator:
pages reach the end sync and async alike, transient faults are retried to the exact result,
a wrong key is refused once without the secret, and a malformed record is refused clearly."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import AuthenticationError, PolygonConfig, ResponseFormatError
from marketpipe.connectors.corporate_actions import CorporateActionsQuery
from marketpipe.connectors.news import NewsQuery
from marketpipe.connectors.polygon_actions import (
    PolygonCorporateActionsClient,
    PolygonDividendsClient,
    PolygonSplitsClient,
    dividend_row,
)
from marketpipe.connectors.polygon_news import PolygonNewsClient, massive_article_row
from marketpipe.simulator import FaultConfig
from marketpipe.simulator.actions import DEMO_CORPORATE_ACTIONS
from tests.conftest import FakeClock, Simulator, clock_options, start_simulator

# Two more AAPL dividends and a reverse split: pages of one record hold a few of each.
MORE_ACTIONS = (
    *DEMO_CORPORATE_ACTIONS,
    *(
        (
            "cash_dividends",
            {
                "id": f"extra-dividend-{month}",
                "symbol": "AAPL",
                "rate": 0.25,
                "process_date": f"2024-{month:02d}-20",
                "ex_date": f"2024-{month:02d}-10",
                "record_date": f"2024-{month:02d}-11",
                "payable_date": f"2024-{month:02d}-20",
            },
        )
        for month in (5, 8)
    ),
    (
        "reverse_splits",
        {
            "id": "extra-reverse-split",
            "symbol": "AAPL",
            "old_rate": 10,
            "new_rate": 1,
            "process_date": "2024-06-03",
            "ex_date": "2024-06-03",
        },
    ),
)
ACTIONS = CorporateActionsQuery(
    symbols=("AAPL", "MSFT"), start=dt.date(2024, 1, 1), end=dt.date(2024, 12, 31)
)
NEWS = NewsQuery(
    symbols=("AAPL", "MSFT"),
    start=dt.datetime(2024, 2, 5, 5, tzinfo=dt.UTC),
    end=dt.datetime(2024, 2, 9, 5, tzinfo=dt.UTC),
)
TRANSIENT = ("429", "500", "503", "reset", "truncate", "invalid_json")


def client_of(kind: str) -> Callable[..., Any]:
    """Build the ``kind`` client (actions or news) against a simulator."""

    def build(server: Simulator, clock: FakeClock | None = None, **config: Any) -> Any:
        config.setdefault("api_key", SecretStr("polygon-demo-key"))
        config.setdefault("requests_per_minute", 10_000)
        client_class = PolygonCorporateActionsClient if kind == "actions" else PolygonNewsClient
        return client_class(PolygonConfig(base_url=server.url, **config), **clock_options(clock))

    return build


CASES = {"actions": (client_of("actions"), ACTIONS), "news": (client_of("news"), NEWS)}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Callable[..., Any], Any]:
    return CASES[request.param]


def test_pages_reach_the_end_sync_and_async_alike(case: tuple[Callable[..., Any], Any]) -> None:
    build, query = case
    server = start_simulator(corporate_actions=MORE_ACTIONS)
    try:
        with build(server) as whole:
            expected = pa.concat_tables(list(whole.fetch_batch(query)))
        with build(server, page_size=2) as client:
            tables = list(client.fetch_batch(query))
        endpoints = getattr(client, "endpoints", (client,))

        async def gather() -> list[pa.Table]:
            tables = []
            for endpoint in endpoints:
                if isinstance(query, NewsQuery) or endpoint.wanted(query):
                    tables += [table async for table in endpoint.async_fetch_batch(query)]
            return tables

        with build(server, page_size=2) as client:
            endpoints = getattr(client, "endpoints", (client,))
            async_tables = asyncio.run(gather())
    finally:
        server.stop()
    assert len(tables) > 3 and max(table.num_rows for table in tables) <= 2
    assert pa.concat_tables(tables).equals(expected) and expected.num_rows >= 6
    assert pa.concat_tables(async_tables).equals(expected)


def test_each_transient_fault_is_retried_and_the_result_is_exact(
    case: tuple[Callable[..., Any], Any], clock: FakeClock
) -> None:
    build, query = case
    truth = start_simulator()
    try:
        with build(truth) as client:
            expected = pa.concat_tables(list(client.fetch_batch(query)))
    finally:
        truth.stop()
    server = start_simulator(clock=clock, faults=FaultConfig(sequence=TRANSIENT))
    try:
        with build(server, clock, max_attempts=len(TRANSIENT) + 1) as client:
            got = pa.concat_tables(list(client.fetch_batch(query)))
        counts = server.request_log.counts()
    finally:
        server.stop()
    assert got.equals(expected) and expected.num_rows > 0
    pages = counts["requests"] // (len(TRANSIENT) + 1)
    assert counts["by_fault"] == {kind: pages for kind in TRANSIENT}


def test_a_wrong_key_is_refused_once_naming_the_variables_never_the_secret(
    case: tuple[Callable[..., Any], Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    build, query = case
    strict = start_simulator(clock=clock, key_id="right-polygon-key", secret_key="unused")
    try:
        client = build(strict, clock, api_key=SecretStr("wrong-polygon-key-91d3"))
        with caplog.at_level(logging.DEBUG), client, pytest.raises(AuthenticationError) as refused:
            list(client.fetch_batch(query))
    finally:
        strict.stop()
    message = str(refused.value)
    assert "check POLYGON_API_KEY and MASSIVE_API_KEY" in message
    assert "91d3" not in message + caplog.text + repr(refused.value)
    assert strict.request_log.counts()["requests"] == 1 and clock.sleeps == []


def test_malformed_records_are_refused_clearly() -> None:
    with pytest.raises(KeyError):
        dividend_row({"id": "E1", "ticker": "AAPL", "ex_dividend_date": "2024-02-09"})
    with pytest.raises(ValueError, match=r"article 7 is malformed \(id: not a text id\)"):
        massive_article_row({"id": 7, "title": "x"})
    with pytest.raises(ValueError, match=r"article 'abc' is malformed .*headline"):
        massive_article_row({"id": "abc", "published_utc": "2024-02-05T10:00:00Z"})
    assert {PolygonSplitsClient.name, PolygonDividendsClient.name} == {"splits", "dividends"}


def test_a_malformed_split_fails_its_page_naming_it() -> None:
    record = {"id": "bad", "symbol": "AAPL", "old_rate": 1, "new_rate": 4}
    # No such day: the vendor's record is malformed (the simulator's filter compares text).
    broken = (
        ("forward_splits", {**record, "process_date": "2024-02-12", "ex_date": "2024-02-30"}),
    )
    server = start_simulator(corporate_actions=broken)
    try:
        with client_of("actions")(server) as client, pytest.raises(ResponseFormatError) as error:
            list(client.fetch_batch(ACTIONS))
    finally:
        server.stop()
    assert "splits page 1: a split record is malformed" in str(error.value)
    assert "2024-02-30" in str(error.value)
