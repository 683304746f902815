"""Exact request counts under injected faults: bounded retries, honoured hints, no 4xx retry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import AuthenticationError, NoAuth, RetryExhaustedError
from marketpipe.simulator import FaultConfig, SimulatorServer
from tests.conftest import FakeClock, alpaca_client, bars_query, start_simulator

QUERY = bars_query(("AAPL", "MSFT"))
PAGE_SIZE = 600


@pytest.fixture
def clean_result(simulator: SimulatorServer) -> pa.Table:
    with alpaca_client(simulator, page_size=PAGE_SIZE) as client:
        return pa.concat_tables(client.fetch_batch(QUERY))


@pytest.fixture
def fault_server(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[SimulatorServer]:
    server = start_simulator(clock=clock, faults=request.param)
    yield server
    server.stop()


def _pages(table: pa.Table) -> int:
    return -(-table.num_rows // PAGE_SIZE)


EVERY_TRANSIENT_FAULT = ("429", "500", "502", "503", "504", "reset", "truncate", "invalid_json")


@pytest.mark.parametrize(
    "fault_server", [FaultConfig(sequence=EVERY_TRANSIENT_FAULT)], indirect=True
)
def test_each_transient_fault_is_retried_once_per_page(
    fault_server: SimulatorServer, clock: FakeClock, clean_result: pa.Table
) -> None:
    with alpaca_client(fault_server, clock, page_size=PAGE_SIZE, max_attempts=9) as client:
        result = pa.concat_tables(client.fetch_batch(QUERY))
    assert result.equals(clean_result)
    pages = _pages(clean_result)
    log = fault_server.request_log.counts()
    assert log["requests"] == pages * 9
    assert log["by_fault"] == {kind: pages for kind in EVERY_TRANSIENT_FAULT}
    assert len(clock.sleeps) == pages * 8


@pytest.mark.parametrize(
    "fault_server", [FaultConfig(sequence=EVERY_TRANSIENT_FAULT)], indirect=True
)
def test_async_fetch_retries_exactly_like_sync(
    fault_server: SimulatorServer, clock: FakeClock, clean_result: pa.Table
) -> None:
    async def collect() -> pa.Table:
        with alpaca_client(fault_server, clock, page_size=PAGE_SIZE, max_attempts=9) as client:
            return pa.concat_tables([t async for t in client.async_fetch_batch(QUERY)])

    assert asyncio.run(collect()).equals(clean_result)
    assert fault_server.request_log.counts()["requests"] == _pages(clean_result) * 9


@pytest.mark.parametrize(
    "fault_server",
    [FaultConfig(seed=3, rates={"429": 0.1, "503": 0.1, "reset": 0.05, "truncate": 0.05})],
    indirect=True,
)
def test_random_faults_cost_exactly_one_request_each(
    fault_server: SimulatorServer, clock: FakeClock, clean_result: pa.Table
) -> None:
    with alpaca_client(fault_server, clock, page_size=100, max_attempts=10) as client:
        result = pa.concat_tables(client.fetch_batch(QUERY))
    assert result.equals(clean_result)
    counts = fault_server.request_log.counts()
    faults = sum(counts["by_fault"].values())
    assert len(counts["by_fault"]) == 4, counts
    assert counts["requests"] == -(-clean_result.num_rows // 100) + faults


@pytest.mark.parametrize(
    "fault_server",
    [FaultConfig(sequence=("429_retry_after",), retry_after_seconds=3)],
    indirect=True,
)
def test_retry_after_is_honoured(fault_server: SimulatorServer, clock: FakeClock) -> None:
    with alpaca_client(fault_server, clock) as client:
        list(client.fetch_batch(bars_query()))
    assert clock.sleeps == [3.0]


@pytest.mark.parametrize(
    "fault_server", [FaultConfig(sequence=("429_reset",), reset_after_seconds=2)], indirect=True
)
def test_rate_limit_reset_is_honoured_without_retry_after(
    fault_server: SimulatorServer, clock: FakeClock
) -> None:
    with alpaca_client(fault_server, clock) as client:
        list(client.fetch_batch(bars_query()))
    assert clock.sleeps == [2.0]


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("500",) * 4)], indirect=True)
def test_server_errors_back_off_exponentially_with_jitter(
    fault_server: SimulatorServer, clock: FakeClock
) -> None:
    with alpaca_client(fault_server, clock, backoff_base=1.0, backoff_cap=3.0) as client:
        list(client.fetch_batch(bars_query()))
    assert len(clock.sleeps) == 4
    for retry, delay in enumerate(clock.sleeps, start=1):
        assert 0 < delay <= min(3.0, 2 ** (retry - 1))


@pytest.mark.parametrize("fault_server", [FaultConfig(fail_symbols={"MSFT": 500})], indirect=True)
def test_persistent_failure_stops_at_the_attempt_bound(
    fault_server: SimulatorServer, clock: FakeClock
) -> None:
    client = alpaca_client(fault_server, clock, max_attempts=4)
    with client, pytest.raises(RetryExhaustedError) as info:
        list(client.fetch_batch(bars_query(("MSFT",))))
    assert "after 4 attempt(s)" in str(info.value)
    assert "HTTP 500: injected failure for MSFT" in str(info.value)
    assert fault_server.request_log.counts()["requests"] == 4


@pytest.mark.parametrize(
    "fault_server",
    [FaultConfig(sequence=("429_retry_after",), retry_after_seconds=100)],
    indirect=True,
)
def test_a_hint_beyond_the_time_bound_fails_now(
    fault_server: SimulatorServer, clock: FakeClock
) -> None:
    client = alpaca_client(fault_server, clock, max_retry_seconds=30)
    with client, pytest.raises(RetryExhaustedError, match="exceed the 30s retry time limit"):
        list(client.fetch_batch(bars_query()))
    assert clock.sleeps == []
    assert fault_server.request_log.counts()["requests"] == 1


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("timeout",))], indirect=True)
def test_read_timeouts_are_retried(fault_server: SimulatorServer, clock: FakeClock) -> None:
    with alpaca_client(fault_server, clock, read_timeout=0.5) as client:
        tables = list(client.fetch_batch(bars_query()))
    assert sum(t.num_rows for t in tables) > 0
    assert fault_server.request_log.counts()["requests"] == 2


def test_client_errors_are_not_retried(clock: FakeClock) -> None:
    server = start_simulator(clock=clock, key_id="PKGOOD", secret_key="right")
    try:
        client = alpaca_client(server, clock, key_id=SecretStr("PKGOOD"), secret_key=SecretStr("x"))
        with client, pytest.raises(AuthenticationError) as refused:
            list(client.fetch_batch(bars_query()))
        assert refused.value.status == 401
        assert "alpaca refused the API credentials (an HTML page ('401 Authorization" in str(
            refused.value
        )
        assert "check APCA_API_KEY_ID and APCA_API_SECRET_KEY" in str(refused.value)
        assert "<" not in str(refused.value)
        anonymous = alpaca_client(server, clock)
        anonymous.transport.auth = NoAuth()
        with anonymous, pytest.raises(AuthenticationError, match="HTTP 401"):
            list(anonymous.fetch_batch(bars_query()))
        assert server.request_log.counts()["by_status"] == {401: 2}
        assert clock.sleeps == []
    finally:
        server.stop()
