"""The second bar vendor: the simulator speaks Massive/Polygon aggregates, PolygonClient reads
them through the shared base, and both agree with the Alpaca-format bars of the same market."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from pydantic import SecretStr

from marketpipe.chaos import CRASH_POINTS
from marketpipe.connectors import (
    AlpacaClient,
    AlpacaConfig,
    AuthenticationError,
    BarsQuery,
    ResponseFormatError,
    UnknownSymbolError,
)
from marketpipe.connectors.polygon import PolygonClient, PolygonConfig
from marketpipe.ingest.bars import StreamSettings, SymbolsFailed, ingest_days
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import partition_path
from marketpipe.markettime.calendar import new_york_days_range, trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import FaultConfig, SimulatorServer, read_request_log
from tests.chaos_trials import SMALL_RUN_ARRIVALS, run_crash_trial
from tests.conftest import start_simulator
from tests.workflow_support import (
    copy_of,
    lake_hashes,
    marketpipe_command,
    planned_after_deleting,
    simulator_process,
    snakemake,
    snakemake_command,
    write_config,
)

FIRST, LAST = dt.date(2024, 1, 2), dt.date(2024, 1, 5)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    running = start_simulator()
    yield running
    running.stop()


def polygon(server: SimulatorServer, **options: object) -> PolygonClient:
    keys = {"api_key": SecretStr("polygon-demo-key")}
    config = PolygonConfig(base_url=server.url, requests_per_minute=10_000, **keys, **options)
    return PolygonClient(config)


def query(*symbols: str) -> BarsQuery:
    start, end = new_york_days_range(FIRST, LAST)
    return BarsQuery(symbols=symbols, start=start, end=end)


def test_the_simulator_answers_like_the_references_say(server: SimulatorServer) -> None:
    start, end = new_york_days_range(FIRST, FIRST)
    url = f"{server.url}/v2/aggs/ticker/AAPL/range/1/minute/{int(start.timestamp() * 1000)}"
    url += f"/{int(end.timestamp() * 1000)}"
    headers = {"Authorization": "Bearer k"}
    first = requests.get(url, params={"adjusted": "false", "limit": 100}, headers=headers)
    body = first.json()
    assert first.status_code == 200 and body["status"] == "OK"
    assert body["resultsCount"] == len(body["results"]) == 100
    bar = body["results"][0]
    assert isinstance(bar["t"], int) and bar["t"] % 60_000 == 0  # milliseconds
    assert isinstance(bar["v"], float)
    assert dt.datetime.fromtimestamp(bar["t"] / 1000, dt.UTC).hour == 9  # 04:00 New York
    next_url = body["next_url"]
    assert "apiKey" not in next_url and "cursor=" in next_url
    assert "adjusted" not in next_url and "limit" not in next_url  # only the opaque cursor
    assert next_url.startswith("/v2/aggs/ticker/AAPL/range/1/minute/")
    second = requests.get(server.url + next_url, headers=headers).json()
    assert second["results"][0]["t"] == body["results"][-1]["t"] + 60_000
    assert second["adjusted"] is False and len(second["results"]) == 100  # carried by the cursor
    holiday = requests.get(
        f"{server.url}/v2/aggs/ticker/AAPL/range/1/minute/2024-01-01/2024-01-01", headers=headers
    ).json()
    assert "results" not in holiday and holiday["resultsCount"] == 0  # absent, not empty
    refused = requests.get(url)
    assert refused.status_code == 401 and refused.json()["status"] == "ERROR"


def aggs_url(
    server: SimulatorServer, first: dt.date, last: dt.date, timespan: str = "minute"
) -> str:
    start, end = new_york_days_range(first, last)
    bounds = f"{int(start.timestamp() * 1000)}/{int(end.timestamp() * 1000)}"
    return f"{server.url}/v2/aggs/ticker/AAPL/range/1/{timespan}/{bounds}"


def test_injected_faults_and_the_free_plan_answer_in_polygon_s_own_words() -> None:
    faults = FaultConfig(sequence=("429", "504", "malformed", "slow"))
    paid = start_simulator(faults=faults)
    free = start_simulator(plan="free", market_now=dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC))
    headers = {"Authorization": "Bearer k"}
    try:
        url = aggs_url(paid, FIRST, FIRST)
        limited = requests.get(url, headers=headers)
        assert limited.status_code == 429 and "Retry-After" not in limited.headers
        assert limited.json()["status"] == "ERROR" and "error" in limited.json()
        gateway = requests.get(url, headers=headers)
        assert gateway.status_code == 504 and "<title>504 Gateway Time-out" in gateway.text
        assert "c" not in requests.get(url, headers=headers).json()["results"][0]
        slow = requests.get(url, headers=headers).json()  # late, but the real answer
        assert slow == requests.get(url, headers=headers).json() and slow["resultsCount"] > 800
        # limit counts base (minute) bars: an hour bar spends up to 60 of them.
        hours = requests.get(aggs_url(free, FIRST, FIRST, "hour"), {"limit": 120}, headers=headers)
        assert hours.json()["resultsCount"] == 2 and "next_url" in hours.json()
        old = requests.get(
            aggs_url(free, dt.date(2021, 6, 1), dt.date(2021, 6, 1)), headers=headers
        )
        assert old.status_code == 403 and old.json()["status"] == "NOT_AUTHORIZED"
        assert "doesn't include this data timeframe" in old.json()["message"]
        today = requests.get(aggs_url(free, FIRST, FIRST), headers=headers).json()
        assert today["status"] == "DELAYED"
        last = dt.datetime.fromtimestamp(today["results"][-1]["t"] / 1000, dt.UTC)
        delayed = dt.datetime(2024, 1, 2, 14, 45, tzinfo=dt.UTC)  # 15 minutes behind
        assert delayed - dt.timedelta(minutes=5) < last < delayed  # the last complete minutes
    finally:
        paid.stop()
        free.stop()


def test_every_page_is_asked_raw_and_a_page_that_is_not_is_refused() -> None:
    # A cursor that keeps only limit and sort: next_url re-sent as given would be adjusted.
    server = start_simulator(polygon_cursor="limit_sort")
    try:
        with polygon(server, page_size=500) as client:
            pages = list(client.paginate(query("AAPL")))
        next_url = pages[0].payload["next_url"]
        again = requests.get(server.url + next_url, headers={"Authorization": "Bearer k"})
        assert again.json()["adjusted"] is True
    finally:
        server.stop()
    assert len(pages) > 2
    for page in pages:
        params = dict(page.request.params)
        assert (params["adjusted"], params["sort"], params["limit"]) == ("false", "asc", "500")
        assert page.payload["adjusted"] is False
    first = pages[0]
    for change, message in (
        ({"adjusted": True}, "came back adjusted"),
        ({"resultsCount": 3}, "resultsCount says 3 bars but the page holds 500"),
    ):
        response = dataclasses.replace(first.response, payload={**first.payload, **change})
        with pytest.raises(ResponseFormatError, match=message):
            client.parse_page(dataclasses.replace(first, response=response), query("AAPL"))


def test_a_bare_429_waits_past_polygon_s_rate_window() -> None:
    limited = start_simulator(faults=FaultConfig(sequence=("429", "429")))
    waits: list[float] = []
    try:
        keys = {"api_key": SecretStr("polygon-demo-key")}
        config = PolygonConfig(base_url=limited.url, requests_per_minute=10_000, **keys)
        with PolygonClient(config, sleep=waits.append) as client:
            table = pa.concat_tables(client.fetch_batch(query("AAPL")))
    finally:
        limited.stop()
    assert table.num_rows > 0
    backoffs = [wait for wait in waits if wait > 0]  # the rate limiter's own waits are 0 here
    assert len(backoffs) == 2 and all(60 <= wait <= 66 for wait in backoffs), waits


def test_polygon_bars_equal_the_alpaca_format_bars_of_the_same_market(
    server: SimulatorServer,
) -> None:
    with polygon(server, page_size=1_000) as client:
        ours = pa.concat_tables(client.fetch_batch(query("AAPL", "MSFT")))
        requests_made = len(server.request_log.entries)
    keys = {"key_id": SecretStr("demo"), "secret_key": SecretStr("demo")}
    alpaca = AlpacaConfig(base_url=server.url, requests_per_minute=10_000, **keys)
    with AlpacaClient(alpaca) as client:
        theirs = pa.concat_tables(client.fetch_batch(query("AAPL", "MSFT")))
    assert ours.num_rows == theirs.num_rows > 4 * 900
    assert ours.equals(theirs)
    assert requests_made >= ours.num_rows // 1_000  # paged by next_url, one ticker at a time


def test_a_wrong_key_names_the_polygon_variables() -> None:
    strict = start_simulator(key_id="the-right-key", secret_key="unused")
    try:
        config = PolygonConfig(base_url=strict.url, api_key=SecretStr("wrong-key-123"))
        with PolygonClient(config) as client, pytest.raises(AuthenticationError) as refused:
            list(client.fetch_batch(query("AAPL")))
    finally:
        strict.stop()
    assert "check POLYGON_API_KEY and MASSIVE_API_KEY" in str(refused.value)
    assert "wrong-key-123" not in str(refused.value)
    assert len(strict.request_log.entries) == 1


def test_the_official_massive_client_reads_the_simulator_exactly(server: SimulatorServer) -> None:
    from massive import RESTClient

    start, end = new_york_days_range(FIRST, LAST)
    official = RESTClient(api_key="polygon-demo-key", base=server.url, retries=0)
    aggs = list(
        official.list_aggs(
            "AAPL",
            1,
            "minute",
            int(start.timestamp() * 1000),
            int(end.timestamp() * 1000),
            adjusted=False,
            sort="asc",
            limit=1_000,  # several pages: the client follows next_url itself
        )
    )
    with polygon(server, page_size=1_000) as client:
        ours = pa.concat_tables(client.fetch_batch(query("AAPL")))
    assert len(aggs) == ours.num_rows > 3 * 900
    assert [agg.timestamp for agg in aggs] == [
        int(t.timestamp() * 1000) for t in ours["timestamp"].to_pylist()
    ]
    for name, field in (("open", "open"), ("close", "close"), ("volume", "volume")):
        assert [getattr(agg, field) for agg in aggs] == ours[name].to_pylist()
    assert [agg.transactions for agg in aggs] == ours["trade_count"].to_pylist()
    assert [agg.vwap for agg in aggs] == ours["vwap"].to_pylist()


POLYGON_ENV = {**os.environ, "POLYGON_API_KEY": "polygon-demo-key"}
FAULTS = ("--fault", "500=0.15", "--fault", "429=0.1", "--fault", "reset=0.05")


@pytest.fixture(scope="module")
def polygon_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A simulator process serving Polygon with faults: its URL and request log."""
    log_file = tmp_path_factory.mktemp("polygon-api") / "requests.jsonl"
    with simulator_process(log_file, "--rate-limit", "0", *FAULTS) as url:
        yield url, log_file


def write_polygon_config(workdir: Path, url: str, **changes: object) -> None:
    write_config(
        workdir,
        vendor="polygon",
        # A bare 429 waits out the rate window: a short one keeps the faulty runs quick.
        polygon={"base_url": url, "requests_per_minute": 10_000, "rate_window_seconds": 1},
        **changes,
    )


@pytest.fixture(scope="module")
def polygon_lake(polygon_api: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow run's directory with a whole Polygon lake, fetched through faults."""
    workdir = tmp_path_factory.mktemp("polygon-lake")
    write_polygon_config(workdir, polygon_api[0])
    result = snakemake(workdir, "--cores", "2", env=POLYGON_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.workflow
def test_a_polygon_lake_equals_the_demo_lake_and_works_unchanged(
    polygon_lake: Path, polygon_api: tuple[str, Path], reference: Path, tmp_path: Path
) -> None:
    again = snakemake(polygon_lake, "-n", env=POLYGON_ENV)
    assert "Nothing to be done" in again.stdout + again.stderr
    served = read_request_log(polygon_api[1])
    bars = [entry for entry in served if entry.path.startswith("/v2/aggs/ticker/")]
    # Besides aggregates, only reference data (the security master, listings, splits and
    # dividends) and news.
    allowed = ("/v2/aggs/ticker/", "/v3/reference/", "/vX/reference/", "/v2/reference/news")
    assert bars and all(entry.path.startswith(allowed) for entry in served)
    assert {"/v3/reference/splits", "/v3/reference/dividends", "/v2/reference/news"} <= {
        entry.path for entry in served
    }
    assert any(entry.fault for entry in bars)  # the run went through injected faults
    symbols, first, last = ["AAPL", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 3, 28)
    ours = read_bars(symbols, first, last, data_dir=polygon_lake / "lake")
    assert ours.equals(read_bars(symbols, first, last, data_dir=reference / "lake"))
    for command in ("verify", "status", "report"):
        checked = subprocess.run(
            marketpipe_command(command),
            cwd=polygon_lake,
            env=POLYGON_ENV,
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # Cross-source: the two vendors' lakes of one market agree to the last minute and keep
    # the same news days, splits and dividends.
    lakes = [str(polygon_lake / "lake"), str(reference / "lake")]
    command = [sys.executable, "-m", "marketpipe.cli", "reconcile", *lakes]
    compared = subprocess.run(command, capture_output=True, text=True)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "A: " + lakes[0] + " (polygon, sip)" in compared.stdout
    assert "the lakes agree" in compared.stdout
    # One lake, one vendor: the demo vendor refuses to add to it.
    workdir = copy_of(polygon_lake, tmp_path)
    write_config(workdir, vendor="demo", end="2024-04-05")
    mixed = snakemake(workdir, "--cores", "2")
    assert mixed.returncode != 0
    assert (
        "holds polygon 1Min sip raw bars; the config asks for demo" in mixed.stdout + mixed.stderr
    )


@pytest.mark.workflow
def test_polygon_dry_run_plans_exactly_the_missing_partitions_and_their_requests(
    polygon_lake: Path, polygon_api: tuple[str, Path], tmp_path: Path
) -> None:
    workdir = copy_of(polygon_lake, tmp_path)
    gone = [
        ("AAPL", dt.date(2024, 2, 5)),
        ("AAPL", dt.date(2024, 2, 6)),
        ("MSFT", dt.date(2024, 3, 12)),
    ]
    named = planned_after_deleting(workdir, gone, POLYGON_ENV)
    assert named == sorted(str(partition_path("lake", s, d)) for s, d in gone)
    planned = subprocess.run(
        marketpipe_command("plan"), cwd=workdir, env=POLYGON_ENV, capture_output=True, text=True
    )
    # One request per symbol and run of days: AAPL's two adjacent days, MSFT's one.
    assert "3 of 122 partitions missing in 2 job(s): about 2 request(s)" in planned.stdout
    before = len(read_request_log(polygon_api[1]))
    assert snakemake(workdir, "--cores", "2", env=POLYGON_ENV).returncode == 0
    made = read_request_log(polygon_api[1])[before:]
    assert len([entry for entry in made if entry.status == 200]) == 2
    assert lake_hashes(workdir) == lake_hashes(polygon_lake)


@pytest.mark.workflow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_polygon_run_killed_at_a_random_moment_resumes_to_the_same_bytes(
    point: str,
    polygon_lake: Path,
    polygon_api: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Polygon serves a symbol-month in one request, so a run makes fewer than Alpaca's.
    arrivals = {**SMALL_RUN_ARRIVALS, "request": 6}
    nth = random.Random(f"polygon-crash-{point}").randint(1, arrivals[point])
    workdir = tmp_path / "trial"
    write_polygon_config(workdir, polygon_api[0])
    monkeypatch.setenv("POLYGON_API_KEY", "polygon-demo-key")  # the trial's runs inherit it
    result = run_crash_trial(
        command=snakemake_command(workdir, "--cores", "2"),
        workdir=workdir,
        data_dir=workdir / "lake",
        point=point,
        nth=nth,
        reference=lake_hashes(polygon_lake),
    )
    assert result.crashed, f"the run reached {point} fewer than {nth} times"
    assert result.passed, result


POLYGON_STREAM = StreamSettings("polygon", Timeframe.parse("1Min"), "sip", "raw")


def _polygon_ingest(client: PolygonClient, data_dir: Path, symbol: str) -> None:
    days = [session.date for session in trading_sessions(FIRST, LAST)]
    with CheckpointStore(data_dir) as store:
        ingest_days(client, store, data_dir, [symbol], days, POLYGON_STREAM)


def test_a_ticker_polygon_does_not_know_is_refused_by_name_and_writes_nothing(
    tmp_path: Path,
) -> None:
    server = start_simulator(unknown_symbols=frozenset({"ZZZZ"}))
    try:
        reply = requests.get(
            f"{server.url}/v3/reference/tickers/ZZZZ", headers={"Authorization": "Bearer k"}
        )
        assert reply.status_code == 404 and reply.json()["status"] == "NOT_FOUND"
        known = requests.get(
            f"{server.url}/v3/reference/tickers/AAPL", headers={"Authorization": "Bearer k"}
        ).json()["results"]
        assert known["active"] is True and known["composite_figi"].startswith("BBG")
        with (
            polygon(server) as client,
            pytest.raises(SymbolsFailed, match="ZZZZ: the vendor does not know ZZZZ") as failed,
        ):
            _polygon_ingest(client, tmp_path, "ZZZZ")
        paths = [entry.path for entry in server.request_log.entries]
    finally:
        server.stop()
    assert isinstance(failed.value.errors["ZZZZ"], UnknownSymbolError)
    assert not list(tmp_path.rglob("bars.parquet"))  # no known-empty days
    assert paths[-1] == "/v3/reference/tickers/ZZZZ"


def test_days_without_bars_while_the_ticker_is_listed_are_suspect_not_empty(
    tmp_path: Path,
) -> None:
    # The market lists NEWCO from 4 January; its reference data (as another vendor's might)
    # from 2 January: two days answered without bars are not recorded as known-empty.
    server = start_simulator(listings={"NEWCO": dt.date(2024, 1, 4)})
    try:
        with polygon(server) as client:
            client.ticker_details("NEWCO")["list_date"] = "2024-01-02"
            with pytest.raises(SymbolsFailed, match="no bars for NEWCO on 2024-01-02 and 1 more"):
                _polygon_ingest(client, tmp_path, "NEWCO")
            assert client.expects_bars("NEWCO", dt.date(2024, 1, 3))
            assert not client.expects_bars("NEWCO", dt.date(2023, 12, 29))
        # Its real listing date: the days before it are empty, the others whole.
        with polygon(server) as client:
            _polygon_ingest(client, tmp_path, "NEWCO")
    finally:
        server.stop()
    with CheckpointStore(tmp_path) as store:
        rows = {day: entry.rows for day, entry in store.ledger("NEWCO").items()}
    assert rows[dt.date(2024, 1, 2)] == rows[dt.date(2024, 1, 3)] == 0
    assert rows[dt.date(2024, 1, 4)] > 0 and rows[dt.date(2024, 1, 5)] > 0
