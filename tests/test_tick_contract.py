"""The contract every trades and quotes connector keeps, against each vendor's face of the
simulator: pages reach the end sync and async alike, transient faults are retried to the exact
result, a wrong key is refused once without the secret; Massive's rows are Alpaca's rows of the
same prints in Massive's codes."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import (
    AuthenticationError,
    PolygonQuotesClient,
    PolygonTradesClient,
    ResponseFormatError,
)
from marketpipe.connectors.polygon_ticks import polygon_ticks_table
from marketpipe.connectors.ticks import (
    QUOTES_SCHEMA,
    TRADES_SCHEMA,
    AlpacaQuotesClient,
    AlpacaTradesClient,
    TicksQuery,
)
from marketpipe.simulator import FaultConfig, SimulatorServer
from tests.conftest import FakeClock, alpaca_client, polygon_client, start_simulator
from tests.tick_codes import in_massive_codes

WINDOW = TicksQuery(
    symbols=("AAPL", "MSFT"),
    start=dt.datetime(2024, 2, 5, 14, 30, tzinfo=dt.UTC),
    end=dt.datetime(2024, 2, 5, 14, 32, tzinfo=dt.UTC),
)
PAGE_SIZE = 100
TRANSIENT = ("429", "500", "503", "reset", "truncate", "invalid_json")


@dataclass(frozen=True)
class TickConnector:
    """How to build one vendor's trades or quotes client, and refuse its key."""

    kind: str
    vendor: str
    build: Callable[..., Any]
    strict_server: dict[str, str]
    wrong_key: dict[str, SecretStr]
    refused_secret: str


def _alpaca(client_class: type) -> Callable[..., Any]:
    return lambda server, clock=None, **config: alpaca_client(
        server, clock, client_class=client_class, **config
    )


def _polygon(client_class: type) -> Callable[..., Any]:
    return lambda server, clock=None, **config: polygon_client(
        server, clock, client_class=client_class, **config
    )


ALPACA_KEYS = {"key_id": "PKRIGHT", "secret_key": "right-secret"}
ALPACA_WRONG = {"key_id": SecretStr("PKRIGHT"), "secret_key": SecretStr("wrong-secret-77c1")}
POLYGON_KEYS = {"key_id": "right-polygon-key", "secret_key": "unused"}
POLYGON_WRONG = {"api_key": SecretStr("wrong-polygon-key-77c1")}
CONNECTORS = {
    "alpaca-trades": TickConnector(
        "trades", "alpaca", _alpaca(AlpacaTradesClient), ALPACA_KEYS, ALPACA_WRONG, "77c1"
    ),
    "alpaca-quotes": TickConnector(
        "quotes", "alpaca", _alpaca(AlpacaQuotesClient), ALPACA_KEYS, ALPACA_WRONG, "77c1"
    ),
    "polygon-trades": TickConnector(
        "trades", "polygon", _polygon(PolygonTradesClient), POLYGON_KEYS, POLYGON_WRONG, "77c1"
    ),
    "polygon-quotes": TickConnector(
        "quotes", "polygon", _polygon(PolygonQuotesClient), POLYGON_KEYS, POLYGON_WRONG, "77c1"
    ),
}


@pytest.fixture(params=sorted(CONNECTORS))
def connector(request: pytest.FixtureRequest) -> TickConnector:
    return CONNECTORS[request.param]


def reference(server: SimulatorServer, kind: str) -> list[dict[str, Any]]:
    """The window's prints as Alpaca's endpoint serves them, in one page per symbol."""
    client_class = AlpacaTradesClient if kind == "trades" else AlpacaQuotesClient
    with alpaca_client(server, client_class=client_class, page_size=10_000) as client:
        return pa.concat_tables(list(client.fetch_batch(WINDOW))).to_pylist()


def expected(server: SimulatorServer, connector: TickConnector) -> list[dict[str, Any]]:
    rows = reference(server, connector.kind)
    return rows if connector.vendor == "alpaca" else [in_massive_codes(row) for row in rows]


def test_pages_reach_the_end_sync_and_async_alike(
    connector: TickConnector, simulator: SimulatorServer
) -> None:
    with connector.build(simulator, page_size=PAGE_SIZE) as client:
        before = len(simulator.request_log.entries)
        tables = list(client.fetch_batch(WINDOW))
        requests_made = len(simulator.request_log.entries) - before

        async def gather() -> list[pa.Table]:
            return [table async for table in client.async_fetch_batch(WINDOW)]

        async_tables = asyncio.run(gather())
    schema = TRADES_SCHEMA if connector.kind == "trades" else QUOTES_SCHEMA
    assert all(table.schema.equals(schema) for table in tables)
    assert len(tables) > 2 and max(table.num_rows for table in tables) <= PAGE_SIZE
    assert requests_made == len(tables)  # one request per page, none repeated
    assert pa.concat_tables(tables).to_pylist() == expected(simulator, connector)
    assert pa.concat_tables(async_tables).equals(pa.concat_tables(tables))


@pytest.mark.parametrize("sequence", [TRANSIENT])
def test_each_transient_fault_is_retried_and_the_result_is_exact(
    connector: TickConnector, clock: FakeClock, sequence: tuple[str, ...]
) -> None:
    server = start_simulator(clock=clock, faults=FaultConfig(sequence=sequence))
    try:
        options = {"page_size": 2_000, "max_attempts": len(sequence) + 1}
        with connector.build(server, clock, **options) as client:
            rows = pa.concat_tables(list(client.fetch_batch(WINDOW))).to_pylist()
        counts = server.request_log.counts()
    finally:
        server.stop()
    truth = start_simulator()
    try:
        assert rows == expected(truth, connector)
    finally:
        truth.stop()
    assert counts["by_fault"] == {
        kind: counts["requests"] // (len(sequence) + 1) for kind in sequence
    }
    assert len(clock.sleeps) == counts["requests"] - counts["requests"] // (len(sequence) + 1)


def test_a_wrong_key_is_refused_once_naming_the_variables_never_the_secret(
    connector: TickConnector, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    strict = start_simulator(clock=clock, **connector.strict_server)
    try:
        client = connector.build(strict, clock, **connector.wrong_key)
        with caplog.at_level(logging.DEBUG), client, pytest.raises(AuthenticationError) as refused:
            list(client.fetch_batch(WINDOW))
    finally:
        strict.stop()
    message = str(refused.value)
    assert f"check {' and '.join(type(client).credential_variables)}" in message
    assert connector.refused_secret not in message + caplog.text + repr(refused.value)
    assert strict.request_log.counts()["requests"] == 1 and clock.sleeps == []


def test_massive_rows_that_break_the_format_are_refused_naming_the_page() -> None:
    good = {
        "exchange": 12,
        "id": "17",
        "price": 10.5,
        "sip_timestamp": 1_707_143_400_000_000_001,
        "size": 100,
        "tape": 3,
    }
    table = polygon_ticks_table("trades", "MSFT", [good], "trades page 1")
    assert table.to_pylist()[0]["timestamp"].value == 1_707_143_400_000_000_001
    assert table.to_pylist()[0]["tape"] == "C" and table.to_pylist()[0]["conditions"] == []
    with pytest.raises(ResponseFormatError, match=r"trades page 2: a trade lacks field 'price'"):
        without_price = {name: value for name, value in good.items() if name != "price"}
        polygon_ticks_table("trades", "MSFT", [good, without_price], "trades page 2")
    with pytest.raises(ResponseFormatError, match=r"page 3: a trade is malformed: .*'T-9'"):
        polygon_ticks_table("trades", "MSFT", [{**good, "id": "T-9"}], "trades page 3")


def test_the_simulator_serves_massive_newest_first_only_when_asked_otherwise(
    simulator: SimulatorServer,
) -> None:
    import requests

    answer = requests.get(
        f"{simulator.url}/v3/trades/MSFT",
        params={"timestamp": "2024-02-05"},
        headers={"Authorization": "Bearer k"},
        timeout=10,
    )
    assert answer.status_code == 400 and "order=desc" in answer.json()["error"]
