"""The simulator speaks Alpaca's wire format: endpoints, errors, paging, limits, sessions."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
import requests

from marketpipe.simulator import SimulatorServer, read_request_log
from tests.conftest import FakeClock, start_simulator

KEYS = {"APCA-API-KEY-ID": "demo", "APCA-API-SECRET-KEY": "demo"}
NEW_YORK = ZoneInfo("America/New_York")


def get(server: SimulatorServer, path: str = "/v2/stocks/bars", **params: str) -> requests.Response:
    headers = params.pop("headers", KEYS)  # type: ignore[arg-type]
    return requests.get(server.url + path, params=params, headers=headers, timeout=5)


def bar_times(response: requests.Response, symbol: str) -> list[dt.datetime]:
    bars = response.json()["bars"][symbol]
    return [dt.datetime.fromisoformat(bar["t"]).astimezone(NEW_YORK) for bar in bars]


def day(server: SimulatorServer, symbol: str, date: str, **params: str) -> requests.Response:
    """All 1Min bars of one New York date."""
    start = dt.datetime.fromisoformat(date).replace(tzinfo=NEW_YORK)
    end = start + dt.timedelta(days=1) - dt.timedelta(seconds=1)
    return get(
        server,
        symbols=symbol,
        timeframe="1Min",
        start=start.astimezone(dt.UTC).isoformat(),
        end=end.astimezone(dt.UTC).isoformat(),
        limit="10000",
        **params,
    )


def test_sip_day_runs_0400_to_2000_and_iex_0800_to_1700(simulator: SimulatorServer) -> None:
    sip = bar_times(day(simulator, "SPY", "2024-03-05"), "SPY")
    iex = bar_times(day(simulator, "SPY", "2024-03-05", feed="iex"), "SPY")
    assert sip[0].time() >= dt.time(4, 0) and sip[-1].time() < dt.time(20, 0)
    assert sip[0].time() < dt.time(5, 0) and sip[-1].time() > dt.time(19, 0)
    assert iex[0].time() >= dt.time(8, 0) and iex[-1].time() < dt.time(17, 0)
    assert set(iex) < set(sip)
    regular = [t for t in sip if dt.time(9, 30) <= t.time() < dt.time(16, 0)]
    assert len(regular) >= 380, "a liquid symbol trades nearly every regular minute"
    assert len(sip) < 960, "only minutes with trades have bars"


def test_no_bars_on_weekends_and_holidays_and_early_closes_end_at_1700(
    simulator: SimulatorServer,
) -> None:
    for closed in ("2024-03-09", "2024-03-10", "2024-07-04", "2024-12-25"):
        assert day(simulator, "AAPL", closed).json()["bars"] == {}
    early = bar_times(day(simulator, "AAPL", "2024-11-29"), "AAPL")
    assert early[-1].time() < dt.time(17, 0)
    normal = bar_times(day(simulator, "AAPL", "2024-11-26"), "AAPL")
    assert normal[-1].time() > dt.time(17, 0)


def test_dst_change_keeps_new_york_session_hours(simulator: SimulatorServer) -> None:
    before = bar_times(day(simulator, "AAPL", "2024-03-08"), "AAPL")
    after = bar_times(day(simulator, "AAPL", "2024-03-11"), "AAPL")
    for times in (before, after):
        assert dt.time(4, 0) <= times[0].time() < dt.time(4, 30)
    utc_first = [t.astimezone(dt.UTC).hour for t in (before[0], after[0])]
    assert utc_first == [9, 8]


def test_pages_count_limit_across_symbols_ordered_by_symbol_then_time(
    simulator: SimulatorServer,
) -> None:
    params = {
        "symbols": "SPY,AAPL,MSFT",
        "timeframe": "1Min",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-03T05:00:00Z",
        "limit": "1000",
    }
    pages, token = [], None
    while True:
        response = get(simulator, **params, **({"page_token": token} if token else {}))
        pages.append(response.json())
        token = pages[-1]["next_page_token"]
        if token is None:
            break
    sizes = [sum(len(v) for v in page["bars"].values()) for page in pages]
    assert all(size == 1000 for size in sizes[:-1])
    flattened = [
        (symbol, bar["t"])
        for page in pages
        for symbol, bars in page["bars"].items()
        for bar in bars
    ]
    assert flattened == sorted(flattened)
    assert next(s for s, _ in flattened) == "AAPL"
    assert len(set(flattened)) == len(flattened)


def test_page_token_is_opaque_and_bound_to_its_query(simulator: SimulatorServer) -> None:
    params = {
        "symbols": "AAPL",
        "timeframe": "1Min",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-03T00:00:00Z",
        "limit": "10",
    }
    token = get(simulator, **params).json()["next_page_token"]
    base64.b64decode(token, validate=True)
    params["end"] = "2024-01-04T00:00:00Z"
    response = get(simulator, **params, page_token=token)
    assert response.status_code == 400
    assert "page_token" in response.json()["message"]
    assert get(simulator, **params, page_token="!!notbase64").status_code == 400


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"timeframe": "1Min", "bogus": "1"}, 400, "unexpected query parameter(s): bogus"),
        ({"timeframe": "60Min"}, 422, "invalid timeframe"),
        ({}, 400, "timeframe is required"),
        ({"timeframe": "1Min", "start": "2024-01-02T09:00:00"}, 400, "invalid start"),
        ({"timeframe": "1Min", "end": "tomorrow"}, 400, "invalid end"),
        (
            {"timeframe": "1Min", "start": "2024-01-03", "end": "2024-01-02"},
            400,
            "end should not be before start",
        ),
        (
            {"timeframe": "1Min", "limit": "10001"},
            400,
            "invalid limit: must be between 1 and 10000",
        ),
        ({"timeframe": "1Min", "feed": "nyse"}, 400, "invalid feed: nyse"),
        ({"timeframe": "1Min", "adjustment": "magic"}, 400, "invalid adjustment: magic"),
        ({"timeframe": "1Min", "symbols": "../etc"}, 400, "invalid symbol: ../etc"),
        ({"timeframe": "1Min", "symbols": ""}, 400, "symbols is required"),
    ],
)
def test_bad_parameters_get_alpaca_style_errors(
    simulator: SimulatorServer, params: dict[str, str], status: int, message: str
) -> None:
    params.setdefault("symbols", "AAPL")
    response = get(simulator, **params)
    assert response.status_code == status
    assert response.json() == {"message": message}


def test_missing_or_wrong_keys_get_the_proxys_html_401_page() -> None:
    # As recorded from the live API: the key check happens before the API, in nginx.
    strict = start_simulator(key_id="PKREAL", secret_key="secret")
    try:
        params = {
            "symbols": "AAPL",
            "timeframe": "1Day",
            "start": "2024-01-02",
            "end": "2024-01-05",
        }
        wrong = {"APCA-API-KEY-ID": "PKREAL", "APCA-API-SECRET-KEY": "nope"}
        for headers in ({}, wrong):
            refused = get(strict, **params, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["Content-Type"] == "text/html"
            assert "<title>401 Authorization Required</title>" in refused.text
            assert "<center>nginx</center>" in refused.text
        right = {"APCA-API-KEY-ID": "PKREAL", "APCA-API-SECRET-KEY": "secret"}
        assert get(strict, **params, headers=right).status_code == 200
    finally:
        strict.stop()


def test_per_key_rate_limit_with_headers_and_429(clock: FakeClock) -> None:
    server = start_simulator(clock=clock, rate_limit_per_minute=3)
    try:
        params = {
            "symbols": "AAPL",
            "timeframe": "1Day",
            "start": "2024-01-02",
            "end": "2024-01-05",
        }
        responses = [get(server, **params) for _ in range(4)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
        assert responses[0].headers["X-RateLimit-Limit"] == "3"
        assert int(responses[3].headers["X-RateLimit-Reset"]) == int(clock.now) + 60
        assert "Retry-After" not in responses[3].headers
        other_key = {"APCA-API-KEY-ID": "other", "APCA-API-SECRET-KEY": "x"}
        assert get(server, **params, headers=other_key).status_code == 200
        clock.sleep(60)
        assert get(server, **params).status_code == 200
    finally:
        server.stop()


def test_gzip_only_when_asked_and_worth_it(simulator: SimulatorServer) -> None:
    params = {
        "symbols": "AAPL",
        "timeframe": "1Min",
        "start": "2024-01-02T00:00:00Z",
        "end": "2024-01-03T00:00:00Z",
    }
    raw = requests.get(
        simulator.url + "/v2/stocks/bars",
        params=params,
        headers={**KEYS, "Accept-Encoding": "gzip"},
        stream=True,
        timeout=5,
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw.raw.read()).startswith(b'{"bars":{"AAPL":[')
    plain = requests.get(
        simulator.url + "/v2/stocks/bars",
        params=params,
        headers={**KEYS, "Accept-Encoding": "identity"},
        timeout=5,
    )
    assert "Content-Encoding" not in plain.headers


def test_same_seed_same_bytes_other_seed_other_bars() -> None:
    servers = [start_simulator(seed=seed) for seed in (11, 11, 12)]
    try:
        bodies = [day(server, "AAPL", "2024-05-08").content for server in servers]
    finally:
        for server in servers:
            server.stop()
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_malformed_bar_injection() -> None:
    server = start_simulator(
        bad_bars={
            "high_below_low": 0.05,
            "negative_volume": 0.05,
            "nan": 0.05,
            "duplicate": 0.05,
            "out_of_order": 0.05,
        },
    )
    try:
        response = day(server, "AAPL", "2024-05-08")
    finally:
        server.stop()
    bars = response.json()["bars"]["AAPL"]  # requests' json accepts the NaN literal
    assert b"NaN" in response.content
    assert any(bar["h"] < bar["l"] for bar in bars)
    assert any(bar["v"] < 0 for bar in bars)
    times = [bar["t"] for bar in bars]
    assert len(set(times)) < len(times)
    assert any(later < earlier for earlier, later in itertools.pairwise(times))


def test_fault_draws_are_deterministic_per_request_identity() -> None:
    from marketpipe.simulator import FaultConfig
    from marketpipe.simulator.faults import FaultInjector

    config = FaultConfig(seed=5, rates={"500": 0.3, "reset": 0.2})
    first, second = FaultInjector(config), FaultInjector(config)
    identities = [f"req-{n}" for n in range(200)]
    forward = [first.decide(identity) for identity in identities]
    backward = [second.decide(identity) for identity in reversed(identities)][::-1]
    assert forward == backward
    share = sum(fault is not None for fault in forward) / len(forward)
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultConfig(rates={"teapot": 0.1})
    with pytest.raises(ValueError, match="sum to <= 1"):
        FaultConfig(rates={"500": 0.7, "503": 0.7})


def test_every_request_is_logged_to_memory_and_file(tmp_path) -> None:
    log_file = tmp_path / "requests.jsonl"
    with SimulatorServer(log_path=log_file) as server:
        get(server, symbols="AAPL", timeframe="1Day", start="2024-01-02", end="2024-01-05")
        get(server, symbols="AAPL", timeframe="2Fortnight")
        assert [entry.status for entry in server.request_log.entries] == [200, 422]
    on_disk = read_request_log(log_file)
    assert [entry.status for entry in on_disk] == [200, 422]
    assert on_disk[0].bars == 4 and on_disk[0].symbols == ("AAPL",)
    assert on_disk[0].key is not None and "demo" not in log_file.read_text()


@pytest.fixture
def simulator_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "marketpipe.simulator", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        yield process, line.strip().rsplit(" ", 1)[-1]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def test_runs_as_a_module_on_an_os_chosen_port_and_stops_on_sigterm(
    simulator_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = simulator_process
    assert url.startswith("http://127.0.0.1:")
    response = requests.get(
        url + "/v2/stocks/bars",
        params={"symbols": "AAPL", "timeframe": "1Day", "start": "2024-01-02", "end": "2024-01-03"},
        headers=KEYS,
        timeout=5,
    )
    assert response.status_code == 200 and len(response.json()["bars"]["AAPL"]) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/v2/stocks/bars", timeout=2)


def test_embedded_server_stops_cleanly_and_releases_its_port() -> None:
    server = start_simulator()
    url, port = server.url, server.port
    session = requests.Session()
    assert session.get(url + "/v2/stocks/bars", headers=KEYS, timeout=5).status_code == 400
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/v2/stocks/bars", headers=KEYS, timeout=2)
    again = SimulatorServer(port=port).start()
    assert again.port == port
    again.stop()


def test_latest_bars_omit_unknown_symbols_and_refuse_a_limit() -> None:
    server = start_simulator(unknown_symbols=frozenset({"ZZZZ"}))
    try:
        latest = get(server, "/v2/stocks/bars/latest", symbols="AAPL,ZZZZ", feed="iex")
        refused = get(server, "/v2/stocks/bars/latest", symbols="AAPL", limit="5")
    finally:
        server.stop()
    bars = latest.json()["bars"]
    assert list(bars) == ["AAPL"]
    assert set(bars["AAPL"]) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
    assert refused.status_code == 400
    assert refused.json() == {"message": "unexpected query parameter(s): limit"}
