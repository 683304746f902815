"""News through the same interface: the simulator's news desk, NewsClient's contract, the
official alpaca-py NewsClient against the simulator, and the lake's news files."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from pydantic import SecretStr

from marketpipe.connectors import (
    NEWS_SCHEMA,
    AlpacaConfig,
    AuthenticationError,
    NewsClient,
    NewsQuery,
    Page,
    Response,
)
from marketpipe.connectors.transport import RequestSpec
from marketpipe.ingest.news import NewsSync
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.news import (
    MissingNewsError,
    latest_versions,
    news_path,
    publish_news,
    read_news,
    split_by_day,
)
from marketpipe.lake.objects import LocalStore
from marketpipe.markettime.calendar import new_york_days_range
from marketpipe.simulator import FaultConfig, SimulatorServer
from marketpipe.simulator.news_api import articles_of
from tests.conftest import FakeClock, RemoteSimulator, Simulator, alpaca_client, start_simulator
from tests.test_connector_contract import (
    EVERY_TRANSIENT_FAULT,
    FROZEN_AT,
    FrozenClock,
    RecordingLimiter,
    _busiest_window,
)

HEADERS = {"APCA-API-KEY-ID": "demo", "APCA-API-SECRET-KEY": "demo"}
FIRST, LAST = dt.date(2024, 1, 2), dt.date(2024, 1, 12)
SYMBOLS = ("AAPL", "MSFT")


def news_client(server: Simulator, clock: FakeClock | None = None, **options: Any) -> NewsClient:
    """A NewsClient pointed at ``server`` (see ``alpaca_client``)."""
    return alpaca_client(server, clock, client_class=NewsClient, **options)


def news_query(**fields: Any) -> NewsQuery:
    start, end = new_york_days_range(FIRST, LAST)
    return NewsQuery(**{"symbols": SYMBOLS, "start": start, "end": end, **fields})


def fetch(client: NewsClient, query: NewsQuery) -> pa.Table:
    return pa.concat_tables([NEWS_SCHEMA.empty_table(), *client.fetch_batch(query)])


def expected_ids(server: SimulatorServer, query: NewsQuery) -> list[int]:
    """Ground truth from the simulator's feed: every article naming a symbol, in the range."""
    found = set()
    day = FIRST - dt.timedelta(days=1)
    while day <= LAST + dt.timedelta(days=1):
        for symbol in {"AAPL", "MSFT", "SPY", "NVDA", "AMZN", "TSLA"}:
            for article in articles_of(server.app.config.seed, symbol, day):
                if set(article.symbols) & set(query.symbols) and (
                    query.start <= article.created_at <= query.end
                ):
                    found.add(article.id)
        day += dt.timedelta(days=1)
    return sorted(found)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    running = start_simulator()
    yield running
    running.stop()


def test_the_news_desk_pages_filters_and_publishes_updates_later(server: SimulatorServer) -> None:
    url = f"{server.url}/v1beta1/news"
    params = {"symbols": "AAPL", "start": "2024-01-02", "end": "2024-01-12", "sort": "asc"}
    first = requests.get(url, params={**params, "limit": 3}, headers=HEADERS).json()
    assert len(first["news"]) == 3 and first["next_page_token"]
    rest = requests.get(
        url, params={**params, "limit": 50, "page_token": first["next_page_token"]}, headers=HEADERS
    ).json()
    every = requests.get(url, params={**params, "limit": 50}, headers=HEADERS).json()
    assert [a["id"] for a in first["news"] + rest["news"]] == [a["id"] for a in every["news"]]
    assert every["next_page_token"] is None
    assert all("AAPL" in article["symbols"] for article in every["news"])
    assert any(len(article["symbols"]) > 1 for article in every["news"])
    assert any(article["summary"] == "" for article in every["news"])
    assert all(article["content"] == "" for article in every["news"])  # not asked for
    bodies = requests.get(url, params={**params, "include_content": "true"}, headers=HEADERS)
    assert any(article["content"].startswith("<p>") for article in bodies.json()["news"])
    for bad, message in (({"limit": 51}, "invalid limit"), ({"page_token": "x"}, "page_token")):
        refused = requests.get(url, params={**params, **bad}, headers=HEADERS)
        assert refused.status_code == 400 and message in refused.json()["message"]
    # An article updated hours later is served as first published until then.
    updated = next(
        article
        for day in range(2, 12)
        for article in articles_of(0, "AAPL", dt.date(2024, 1, day))
        if article.updated_at is not None
    )
    before = updated.served(updated.updated_at - dt.timedelta(seconds=1), include_content=False)
    after = updated.served(updated.updated_at, include_content=False)
    assert before["updated_at"] < after["updated_at"] and after["headline"].endswith("(updated)")


def test_news_client_pages_to_the_end_sync_and_async_alike(server: SimulatorServer) -> None:
    query = news_query()
    server.request_log.clear()
    with news_client(server, page_size=7) as client:
        table = fetch(client, query)
        requests_made = len(server.request_log.entries)

        async def collect() -> list[pa.Table]:
            return [t async for t in client.async_fetch_batch(query)]

        in_async = pa.concat_tables([NEWS_SCHEMA.empty_table(), *asyncio.run(collect())])
    assert sorted(table["id"].to_pylist()) == expected_ids(server, query)
    assert table.num_rows > 14 and requests_made == -(-table.num_rows // 7)
    assert in_async.equals(table) and table.schema.equals(NEWS_SCHEMA)
    assert client.rejected == []


def test_the_official_alpaca_py_news_client_reads_the_simulator_exactly(
    server: SimulatorServer,
) -> None:
    from alpaca.data.historical.news import NewsClient as OfficialNewsClient
    from alpaca.data.requests import NewsRequest

    query = news_query()
    official = OfficialNewsClient("demo", "demo", url_override=server.url)
    theirs = official.get_news(
        NewsRequest(symbols="AAPL,MSFT", start=query.start, end=query.end)
    ).data["news"]
    with news_client(server) as client:
        ours = fetch(client, query).to_pylist()
    assert sorted(a.id for a in theirs) == sorted(row["id"] for row in ours) != []
    by_id = {row["id"]: row for row in ours}
    for article in theirs:
        mine = by_id[article.id]
        assert (article.headline, article.updated_at, article.created_at) == (
            mine["headline"],
            mine["updated_at"],
            mine["created_at"],
        )
        assert sorted(article.symbols) == sorted(mine["symbols"])
        assert [image.url for image in article.images] == [i["url"] for i in mine["images"]]


@pytest.fixture
def fault_server(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[SimulatorServer]:
    running = start_simulator(clock=clock, faults=request.param)
    yield running
    running.stop()


@pytest.mark.parametrize(
    "fault_server", [FaultConfig(sequence=EVERY_TRANSIENT_FAULT)], indirect=True
)
def test_every_transient_fault_is_retried_and_the_articles_are_exact(
    fault_server: SimulatorServer, clock: FakeClock, server: SimulatorServer
) -> None:
    with news_client(server) as client:
        clean = fetch(client, news_query())
    with news_client(fault_server, clock, page_size=10, max_attempts=9) as client:
        result = fetch(client, news_query())
    assert result.equals(clean)
    counts = fault_server.request_log.counts()
    pages = -(-clean.num_rows // 10)
    assert counts["requests"] == pages * 9
    assert counts["by_fault"] == {kind: pages for kind in EVERY_TRANSIENT_FAULT}


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("malformed",))], indirect=True)
def test_malformed_records_are_kept_apart_with_their_reason(
    fault_server: SimulatorServer, clock: FakeClock
) -> None:
    with news_client(fault_server, clock) as client:
        table = fetch(client, news_query())
    assert 2 in table["id"].to_pylist()  # the page's valid article went on
    (refused,) = client.rejected
    assert refused.page == 1 and '"id":1' in refused.record
    assert "article 1 is malformed (created_at: Input should be a valid datetime" in refused.reason


def test_malformed_pages_and_records_in_detail() -> None:
    client = NewsClient(AlpacaConfig(key_id="k", secret_key="s"))
    spec = RequestSpec(path="/v1beta1/news", endpoint="news")
    records = [
        {"id": 3, "headline": "naive", "created_at": "2024-01-02T10:00:00", "updated_at": "x"},
        {"id": 4, "headline": "", "created_at": "2024-01-02T10:00:00Z"},
        {
            "id": 5,
            "headline": "older update",
            "created_at": "2024-01-02T10:00:00Z",
            "updated_at": "2024-01-02T09:00:00Z",
        },
        "not an object",
    ]
    page = Page(1, None, spec, Response(200, {}, {"news": records}, 0, 1, 0.0))
    assert client.parse_page(page, news_query()).num_rows == 0
    reasons = [refused.reason for refused in client.rejected]
    assert "created_at: Input should have timezone info" in reasons[0]
    assert "headline: String should have at least 1 character" in reasons[1]
    assert "updated_at (2024-01-02 09:00:00+00:00) is before created_at" in reasons[2]
    assert reasons[3] == "the record is not an object"
    broken = Page(1, None, spec, Response(200, {}, {"bars": {}}, 0, 1, 0.0))
    with pytest.raises(Exception, match="expected a 'news' list"):
        client.parse_page(broken, news_query())


def test_a_wrong_key_is_refused_once_without_the_secret_anywhere(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    strict = start_simulator(clock=clock, key_id="PKRIGHT", secret_key="right-secret")
    try:
        client = news_client(
            strict, clock, key_id=SecretStr("PKRIGHT"), secret_key=SecretStr("s3cr3t-n3ws")
        )
        with caplog.at_level(logging.DEBUG), client, pytest.raises(AuthenticationError) as refused:
            fetch(client, news_query())
    finally:
        strict.stop()
    assert "check APCA_API_KEY_ID and APCA_API_SECRET_KEY" in str(refused.value)
    assert "s3cr3t-n3ws" not in str(refused.value) + caplog.text
    assert strict.request_log.counts()["requests"] == 1 and clock.sleeps == []


def _news_on_a_budget(url: str, budget_path: str) -> list[float]:
    clock = FrozenClock()
    limiter = RecordingLimiter(budget_path, 5, window_seconds=10.0, clock=clock)
    with news_client(RemoteSimulator(url), clock, page_size=10, rate_limiter=limiter) as client:
        fetch(client, news_query())
    limiter.close()
    return limiter.slots


def _news_in_a_process(url: str, budget_path: str, queue: Any) -> None:
    queue.put(_news_on_a_budget(url, budget_path))


def test_news_clients_share_one_budget_across_threads_and_processes(
    server: SimulatorServer, tmp_path: Path
) -> None:
    args = (server.url, str(tmp_path / "budget.sqlite"))
    server.request_log.clear()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_news_in_a_process, args=(*args, queue))
    worker.start()
    with ThreadPoolExecutor(2) as threads:
        slots = [s for done in threads.map(lambda _: _news_on_a_budget(*args), "ab") for s in done]
    slots += queue.get(timeout=120)
    worker.join(timeout=120)
    assert worker.exitcode == 0
    assert len(slots) == len(server.request_log.entries) > 3 * 2
    assert _busiest_window(slots, 10.0) == 5 and min(slots) >= FROZEN_AT


def test_a_day_file_holds_each_article_once_in_its_latest_version(tmp_path: Path) -> None:
    base = {
        "headline": "h",
        "summary": "",
        "author": "",
        "source": "benzinga",
        "url": "",
        "images": [],
        "content": "",
    }
    created = dt.datetime(2024, 1, 3, 4, 30, tzinfo=dt.UTC)  # 23:30 on Jan 2 in New York
    rows = [
        {**base, "id": 7, "created_at": created, "updated_at": created, "symbols": ["AAPL"]},
        {
            **base,
            "id": 7,
            "created_at": created,
            "updated_at": created + dt.timedelta(hours=2),
            "headline": "h2",
            "symbols": ["AAPL", "MSFT"],
        },
    ]
    table = pa.Table.from_pylist(rows, schema=NEWS_SCHEMA)
    (day,) = split_by_day(table)
    assert day == dt.date(2024, 1, 2)
    assert latest_versions(table)["headline"].to_pylist() == ["h2"]
    first, _ = publish_news(tmp_path, day, table, SYMBOLS)
    again, _ = publish_news(tmp_path, day, table.take([1, 0]), SYMBOLS)  # any order, same bytes
    assert first == again and first.rows == 1 and news_path(tmp_path, day).exists()
    assert read_news(["MSFT"], day, day, data_dir=tmp_path)["id"].to_pylist() == [7]
    assert read_news(["SPY"], day, day, data_dir=tmp_path).num_rows == 0
    with pytest.raises(MissingNewsError, match="news of 1 day\\(s\\) not in the lake: 2024-01-03"):
        read_news(None, day, dt.date(2024, 1, 3), data_dir=tmp_path)
    assert (
        read_news(None, day, dt.date(2024, 1, 3), data_dir=tmp_path, missing="skip").num_rows == 1
    )
    assert read_news(None, day, day, data_dir=tmp_path, output="pandas")["id"].tolist() == [7]


@pytest.mark.parametrize("fault_server", [FaultConfig(sequence=("malformed",))], indirect=True)
def test_the_recheck_counts_and_keeps_refused_records_as_the_fetch_does(
    fault_server: SimulatorServer, clock: FakeClock, tmp_path: Path
) -> None:
    days = [FIRST + dt.timedelta(days=offset) for offset in range((LAST - FIRST).days + 1)]
    with news_client(fault_server, clock) as client, CheckpointStore(tmp_path) as store:
        sync = NewsSync(client, LocalStore(tmp_path), store, tuple(SYMBOLS), False, "run")
        report = sync.recheck_days(days)
        recorded = store.news_entries()
    assert report.rejected == 1  # not silently 0
    kept = pa.concat_tables(pq.read_table(path) for path in tmp_path.rglob("rejected.parquet"))
    assert kept.num_rows == 1 and "is malformed" in kept["reason"][0].as_py()
    assert sum(entry.rejected for entry in recorded.values()) == 1
