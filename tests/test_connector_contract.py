"""The contract every bar connector keeps, run against each vendor's face of the simulator.

A third connector gets all of these by adding one :class:`Connector` to ``CONNECTORS``: how to
build its client, the simulator settings that accept exactly one key, and a wrong key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import (
    OHLCV_SCHEMA,
    AuthenticationError,
    BarsQuery,
    BaseApiClient,
    ResponseFormatError,
)
from marketpipe.connectors.models import TradedAs
from marketpipe.connectors.rate_budget import SharedRateLimiter
from marketpipe.markettime.calendar import NEW_YORK, new_york_midnight
from marketpipe.simulator import FaultConfig, SimulatorServer
from tests.conftest import (
    FakeClock,
    RemoteSimulator,
    alpaca_client,
    bars_query,
    expected_bars,
    polygon_client,
    start_simulator,
    utc,
)
from tests.securities_book import securities_simulator

ClientFactory = Callable[..., BaseApiClient[BarsQuery]]


@dataclass(frozen=True)
class Connector:
    """What the contract needs to know about one vendor's client."""

    name: str
    client: ClientFactory  # (server, clock=None, **config) -> client
    strict_server: dict[str, str]  # simulator settings that accept one key only
    wrong_key: dict[str, SecretStr]  # client settings holding a refused key
    refused_secret: str  # the secret in wrong_key that must appear nowhere


CONNECTORS = {
    "alpaca": Connector(
        "alpaca",
        alpaca_client,
        {"key_id": "PKRIGHT", "secret_key": "right-secret"},
        {"key_id": SecretStr("PKRIGHT"), "secret_key": SecretStr("wrong-secret-4f2a")},
        "wrong-secret-4f2a",
    ),
    "polygon": Connector(
        "polygon",
        polygon_client,
        {"key_id": "right-polygon-key", "secret_key": "unused"},
        {"api_key": SecretStr("wrong-polygon-key-4f2a")},
        "wrong-polygon-key-4f2a",
    ),
}
TWO_SYMBOLS = bars_query(("AAPL", "MSFT"))
PAGE_SIZE = 400
EVERY_TRANSIENT_FAULT = ("429", "500", "502", "503", "504", "reset", "truncate", "invalid_json")


@pytest.fixture(params=sorted(CONNECTORS))
def connector(request: pytest.FixtureRequest) -> Connector:
    return CONNECTORS[request.param]


@pytest.fixture
def fault_server(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[SimulatorServer]:
    server = start_simulator(clock=clock, faults=request.param)
    yield server
    server.stop()


def fetch_all(client: BaseApiClient[BarsQuery], query: BarsQuery) -> pa.Table:
    """Every page of ``query`` as one table (the canonical empty table when there is none)."""
    return pa.concat_tables([OHLCV_SCHEMA.empty_table(), *client.fetch_batch(query)])


def rows(table: pa.Table) -> list[tuple]:
    columns = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    data = table.select(columns).to_pydict()
    return list(zip(*(data[name] for name in columns), strict=True))


def test_pagination_reaches_the_end_sync_and_async_alike(
    connector: Connector, simulator: SimulatorServer
) -> None:
    with connector.client(simulator, page_size=PAGE_SIZE) as client:
        tables = list(client.fetch_batch(TWO_SYMBOLS))
        requests_made = len(simulator.request_log.entries)

        async def collect() -> list[pa.Table]:
            return [table async for table in client.async_fetch_batch(TWO_SYMBOLS)]

        async_tables = asyncio.run(collect())
    assert rows(pa.concat_tables(tables)) == expected_bars(simulator, TWO_SYMBOLS)
    assert len(tables) > 2 and max(table.num_rows for table in tables) <= PAGE_SIZE
    assert all(table.schema.equals(OHLCV_SCHEMA) for table in tables)
    assert requests_made == len(tables)  # one request per page, none repeated
    assert pa.concat_tables(async_tables).equals(pa.concat_tables(tables))


def test_an_empty_range_is_an_empty_canonical_table(
    connector: Connector, simulator: SimulatorServer
) -> None:
    holiday = bars_query(("AAPL", "MSFT"), start=utc(2024, 1, 1, 5), end=utc(2024, 1, 2, 4, 59))
    with connector.client(simulator) as client:
        tables = list(client.fetch_batch(holiday))
    assert sum(table.num_rows for table in tables) == 0
    assert all(table.schema.equals(OHLCV_SCHEMA) for table in tables)
    assert all(entry.status == 200 for entry in simulator.request_log.entries)


@pytest.mark.parametrize(
    "fault_server", [FaultConfig(sequence=EVERY_TRANSIENT_FAULT)], indirect=True
)
def test_each_transient_fault_is_retried_and_the_result_is_exact(
    connector: Connector, fault_server: SimulatorServer, clock: FakeClock
) -> None:
    with connector.client(fault_server, clock, page_size=PAGE_SIZE, max_attempts=9) as client:
        result = fetch_all(client, TWO_SYMBOLS)
    assert rows(result) == expected_bars(fault_server, TWO_SYMBOLS)
    counts = fault_server.request_log.counts()
    pages = counts["requests"] // 9
    assert counts["requests"] == pages * 9 and pages > 2
    assert counts["by_fault"] == {kind: pages for kind in EVERY_TRANSIENT_FAULT}
    assert len(clock.sleeps) == pages * 8


@pytest.mark.parametrize(
    ("fault_server", "expected_sleeps"),
    [
        (FaultConfig(sequence=("429_retry_after",), retry_after_seconds=3), [3.0]),
        (FaultConfig(sequence=("429_reset",), reset_after_seconds=2), [2.0]),
    ],
    indirect=["fault_server"],
)
def test_retry_after_and_reset_hints_are_honoured(
    connector: Connector,
    fault_server: SimulatorServer,
    clock: FakeClock,
    expected_sleeps: list[float],
) -> None:
    with connector.client(fault_server, clock) as client:
        assert fetch_all(client, bars_query()).num_rows > 0
    assert clock.sleeps == expected_sleeps


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("timeout",))], indirect=True)
def test_a_read_timeout_is_retried(
    connector: Connector, fault_server: SimulatorServer, clock: FakeClock
) -> None:
    with connector.client(fault_server, clock, read_timeout=0.5) as client:
        assert fetch_all(client, bars_query()).num_rows > 0
    assert fault_server.request_log.counts()["requests"] == 2


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("malformed",))], indirect=True)
def test_a_malformed_page_fails_clearly_and_is_not_retried(
    connector: Connector, fault_server: SimulatorServer, clock: FakeClock
) -> None:
    client = connector.client(fault_server, clock)
    with client, pytest.raises(ResponseFormatError, match=r"page 1: a bar .*lacks field 'c'"):
        fetch_all(client, bars_query())
    assert fault_server.request_log.counts()["requests"] == 1
    assert clock.sleeps == []


def test_a_wrong_key_is_refused_once_naming_the_variables_never_the_secret(
    connector: Connector, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    strict = start_simulator(clock=clock, **connector.strict_server)
    try:
        client = connector.client(strict, clock, **connector.wrong_key)
        with caplog.at_level(logging.DEBUG), client, pytest.raises(AuthenticationError) as refused:
            fetch_all(client, bars_query())
    finally:
        strict.stop()
    message = str(refused.value)
    assert f"check {' and '.join(type(client).credential_variables)}" in message
    assert connector.refused_secret not in message + caplog.text + repr(refused.value)
    assert strict.request_log.counts()["requests"] == 1 and clock.sleeps == []


class RecordingLimiter(SharedRateLimiter):
    """A shared budget that records the moment each reservation lets a request go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots: list[float] = []

    def reserve(self) -> float:
        wait = super().reserve()
        self.slots.append(FROZEN_AT + wait)
        return wait


FROZEN_AT = 1_000.0


class FrozenClock(FakeClock):
    """Time that never moves, so every booking competes for the same window's slots."""

    def __init__(self) -> None:
        super().__init__(FROZEN_AT)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def fetch_on_a_shared_budget(name: str, url: str, budget_path: str) -> list[float]:
    """Fetch two symbols on the budget at ``budget_path``; the slots it was given."""
    clock = FrozenClock()
    limiter = RecordingLimiter(budget_path, 5, window_seconds=10.0, clock=clock)
    client = CONNECTORS[name].client(
        RemoteSimulator(url), clock, rate_limiter=limiter, page_size=PAGE_SIZE
    )
    with client:
        fetch_all(client, TWO_SYMBOLS)
    limiter.close()
    return limiter.slots


def _fetch_in_a_process(name: str, url: str, budget_path: str, queue: Any) -> None:
    queue.put(fetch_on_a_shared_budget(name, url, budget_path))


def _busiest_window(slots: list[float], window: float) -> int:
    return max(sum(1 for other in slots if slot <= other < slot + window) for slot in slots)


def test_one_budget_is_shared_by_threads_and_processes(
    connector: Connector, simulator: SimulatorServer, tmp_path: Path
) -> None:
    args = (connector.name, simulator.url, str(tmp_path / "budget.sqlite"))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_fetch_in_a_process, args=(*args, queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    with ThreadPoolExecutor(2) as threads:
        slots = [
            slot
            for done in threads.map(lambda _: fetch_on_a_shared_budget(*args), "ab")
            for slot in done
        ]
    slots += [slot for _ in workers for slot in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert len(slots) == len(simulator.request_log.entries) > 4 * 2
    assert _busiest_window(slots, 10.0) == 5  # never over the budget, and tightly packed


@pytest.fixture(scope="module")
def securities_server() -> Iterator[SimulatorServer]:
    yield from securities_simulator()


RENAMED = bars_query(
    ("META",),
    start=new_york_midnight(dt.date(2022, 6, 6)),
    end=new_york_midnight(dt.date(2022, 6, 11)),
    asof=dt.date(2022, 6, 11),
    timeframe="1Hour",
    traded_as=(
        TradedAs(ticker="FB", last=dt.date(2022, 6, 8)),
        TradedAs(ticker="META", first=dt.date(2022, 6, 9)),
    ),
)


def test_a_renamed_security_comes_whole_under_its_symbol(
    connector: Connector, securities_server: SimulatorServer
) -> None:
    # FB became META on 2022-06-09: the week before and after is one series, labelled META,
    # and the same truth from either vendor.
    with connector.client(securities_server) as client:
        table = fetch_all(client, RENAMED)
    days = {stamp.astimezone(NEW_YORK).date() for stamp in table["timestamp"].to_pylist()}
    assert sorted(days) == [dt.date(2022, 6, day) for day in (6, 7, 8, 9, 10)]
    assert set(table["symbol"].to_pylist()) == {"META"}
    with CONNECTORS["alpaca"].client(securities_server) as reference:
        assert rows(table) == rows(fetch_all(reference, RENAMED))


def test_a_reused_ticker_never_brings_the_other_companys_bars(
    connector: Connector, securities_server: SimulatorServer
) -> None:
    # The company that took FB up in 2023 has no bars in June 2022, whoever traded as FB.
    newcomer = RENAMED.model_copy(
        update={
            "symbols": ("FB",),
            "asof": dt.date(2023, 6, 1),
            "traded_as": (TradedAs(ticker="FB", first=dt.date(2023, 3, 1)),),
        }
    )
    with connector.client(securities_server) as client:
        assert fetch_all(client, newcomer).num_rows == 0


@pytest.mark.parametrize(
    ("symbol", "first", "last", "days"),
    [
        # Twitter's last session was 2022-10-27 (taken over for cash): nothing after it.
        ("TWTR", dt.date(2022, 10, 24), dt.date(2022, 10, 31), [24, 25, 26, 27]),
        # Arm listed on 2023-09-14: nothing before it.
        ("ARM", dt.date(2023, 9, 11), dt.date(2023, 9, 15), [14, 15]),
    ],
)
def test_a_delisting_and_a_listing_bound_the_bars(
    connector: Connector,
    securities_server: SimulatorServer,
    symbol: str,
    first: dt.date,
    last: dt.date,
    days: list[int],
) -> None:
    query = bars_query(
        (symbol,),
        start=new_york_midnight(first),
        end=new_york_midnight(last + dt.timedelta(days=1)),
        asof=last + dt.timedelta(days=1),
        timeframe="1Hour",
    )
    with connector.client(securities_server) as client:
        table = fetch_all(client, query)
    found = {stamp.astimezone(NEW_YORK).date() for stamp in table["timestamp"].to_pylist()}
    assert sorted(found) == [first.replace(day=day) for day in days]
