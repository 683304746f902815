"""Shared fixtures: an embedded simulator on an OS-chosen port and an injectable clock."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from marketpipe.connectors import AlpacaClient, AlpacaConfig, BarsQuery
from marketpipe.connectors.alpaca import AlpacaDataClient
from marketpipe.connectors.polygon import PolygonApiClient, PolygonClient, PolygonConfig
from marketpipe.connectors.rate_limit import RateLimiter
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.clock import NOW_VARIABLE
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SimulatorConfig, SimulatorServer
from tests.s3_server import S3Server, s3_server
from tests.workflow_support import snakemake, write_config


@pytest.fixture(autouse=True, scope="session")
def _calendar_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep computed calendars (for this process and the workflows it starts) out of ~/.cache."""
    previous = os.environ.get("MARKETPIPE_CACHE_DIR")
    os.environ["MARKETPIPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["MARKETPIPE_CACHE_DIR"]
    else:
        os.environ["MARKETPIPE_CACHE_DIR"] = previous


# The whole suite runs "at" one instant unless a test pins its own: the workflow does some
# things once per New York date (the corporate-actions check) and "today" moves, so a suite
# that crosses midnight must not see two days.
SUITE_NOW = "2026-12-01T12:00:00-05:00"


@pytest.fixture(autouse=True, scope="session")
def _pinned_market_clock() -> Iterator[None]:
    """Pin ``marketpipe.markettime.clock`` (and every process the tests start) to SUITE_NOW."""
    previous = os.environ.get(NOW_VARIABLE)
    os.environ[NOW_VARIABLE] = previous or SUITE_NOW
    yield
    if previous is None:
        del os.environ[NOW_VARIABLE]


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Undo what a test's in-process calls put in os.environ (a run id set on first use
    would otherwise be inherited by every workflow a later test starts)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def s3_api() -> Iterator[S3Server]:
    """moto's S3 API on loopback, requests counted, for one test module (buckets per test)."""
    with s3_server() as running:
        yield running


class FakeClock:
    """A clock whose sleeps advance time instantly and are recorded."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(seed=7, rate_limit_per_minute=0)) as server:
        yield server


def start_simulator(
    clock: FakeClock | None = None, market_now: dt.datetime | None = None, **config: Any
) -> SimulatorServer:
    """Start a simulator with the given config fields (caller stops it); ``market_now``
    pins the market's clock."""
    config.setdefault("seed", 7)
    config.setdefault("rate_limit_per_minute", 0)
    options: dict[str, Any] = {"clock": clock} if clock is not None else {}
    if market_now is not None:
        options["market_clock"] = lambda: market_now
    return SimulatorServer(SimulatorConfig(**config), **options).start()


def clock_options(clock: FakeClock | None) -> dict[str, Any]:
    """Transport options that make a client's time ``clock``'s (none: real time)."""
    if clock is None:
        return {}
    return {"clock": clock, "sleep": clock.sleep, "async_sleep": clock.async_sleep}


@dataclass(frozen=True)
class RemoteSimulator:
    """A running simulator known only by its URL (one started by another process)."""

    url: str


Simulator = SimulatorServer | RemoteSimulator


def alpaca_client(
    server: Simulator,
    clock: FakeClock | None = None,
    *,
    rate_limiter: RateLimiter | None = None,
    client_class: type[AlpacaDataClient[Any]] = AlpacaClient,
    **config: Any,
) -> Any:
    """An Alpaca client (bars, or ``client_class``: news, corporate actions) pointed at
    ``server``; with ``clock``, time is fake and instant."""
    config.setdefault("key_id", SecretStr("demo"))
    config.setdefault("secret_key", SecretStr("demo"))
    config.setdefault("requests_per_minute", 10_000)
    return client_class(
        AlpacaConfig(base_url=server.url, trading_url=server.url, **config),
        rate_limiter=rate_limiter,
        **clock_options(clock),
    )


def polygon_client(
    server: Simulator,
    clock: FakeClock | None = None,
    *,
    rate_limiter: RateLimiter | None = None,
    client_class: type[PolygonApiClient[Any]] = PolygonClient,
    **config: Any,
) -> Any:
    """A Massive client (aggregates, or ``client_class``: trades, quotes) pointed at
    ``server``; with ``clock``, time is fake and instant."""
    config.setdefault("api_key", SecretStr("polygon-demo-key"))
    config.setdefault("requests_per_minute", 10_000)
    return client_class(
        PolygonConfig(base_url=server.url, **config),
        rate_limiter=rate_limiter,
        **clock_options(clock),
    )


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def expected_bars(server: SimulatorServer, query: BarsQuery) -> list[tuple]:
    """Ground truth straight from the simulator's market, ordered by symbol then time."""
    rows = []
    sessions = trading_sessions(query.start.date() - dt.timedelta(days=1), query.end.date())
    for symbol in sorted(query.symbols):
        for session in sessions:
            for bar in server.app.market.bars(
                symbol, session, query.feed, Timeframe.parse(query.timeframe)
            ):
                moment = dt.datetime.fromtimestamp(bar.t, dt.UTC)
                if query.start <= moment <= query.end:
                    rows.append((symbol, moment, bar.o, bar.h, bar.l, bar.c, float(bar.v)))
    return rows


def bars_query(symbols: tuple[str, ...] = ("AAPL",), **fields: Any) -> BarsQuery:
    """A query over one early-January 2024 trading day unless told otherwise."""
    fields.setdefault("start", utc(2024, 1, 2))
    fields.setdefault("end", utc(2024, 1, 3, 5))
    return BarsQuery(symbols=symbols, **fields)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted workflow run: the lake other scenarios must end up identical to."""
    workdir = tmp_path_factory.mktemp("reference")
    write_config(workdir)
    result = snakemake(workdir, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir
