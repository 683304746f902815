"""The simulator's trades and quotes over loopback HTTP: its minute bars are exactly what the
trades that count toward bars aggregate to, quotes bracket the prints, pages resume where
they stopped, and alpaca-py reads them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockQuotesRequest, StockTradesRequest

from marketpipe.simulator import SimulatorServer
from marketpipe.simulator.ticks import counts_toward_bars, counts_toward_range
from tests.conftest import start_simulator

HEADERS = {"APCA-API-KEY-ID": "demo", "APCA-API-SECRET-KEY": "demo"}
# The last minute's prints run to its last nanosecond.
START, END = "2024-02-05T14:30:00Z", "2024-02-05T14:59:59.999999999Z"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    # Many bars with open or close outside [low, high], and a day corrected after the fact.
    simulator = start_simulator(
        outside_range_rate=0.2, corrections=frozenset({("MSFT", dt.date(2024, 2, 5))})
    )
    try:
        yield simulator
    finally:
        simulator.stop()


def pages(server: SimulatorServer, path: str, kind: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a query, following next_page_token."""
    answers, token = [], None
    while True:
        query = {**params, **({"page_token": token} if token else {})}
        reply = requests.get(f"{server.url}{path}", params=query, headers=HEADERS, timeout=30)
        assert reply.status_code == 200, reply.text
        answers.append(reply.json())
        token = answers[-1]["next_page_token"]
        if token is None:
            return answers


def by_symbol(answers: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        for symbol, rows in answer[kind].items():
            grouped.setdefault(symbol, []).extend(rows)
    return grouped


def minute_of(stamp: str) -> str:
    return stamp[:16] + ":00Z"


def test_each_minute_bar_is_what_its_counted_trades_aggregate_to(server: SimulatorServer) -> None:
    window = {"symbols": "AAPL,MSFT", "start": START, "end": END}
    trades = by_symbol(pages(server, "/v2/stocks/trades", "trades", limit=4000, **window), "trades")
    bars = by_symbol(
        pages(server, "/v2/stocks/bars", "bars", timeframe="1Min", limit=10000, **window), "bars"
    )
    outside = 0
    for symbol in ("AAPL", "MSFT"):
        minutes: dict[str, list[dict[str, Any]]] = {}
        for trade in trades[symbol]:
            minutes.setdefault(minute_of(trade["t"]), []).append(trade)
        assert sorted(minutes) == [bar["t"] for bar in bars[symbol]]
        for bar in bars[symbol]:
            prints = minutes[bar["t"]]
            assert [p["t"] for p in prints] == sorted(p["t"] for p in prints)
            counted = [p for p in prints if counts_toward_bars(tuple(p["c"]))]
            ranged = [p["p"] for p in counted if counts_toward_range(tuple(p["c"]))]
            volume = sum(p["s"] for p in counted)
            aggregate = {
                "o": counted[0]["p"],
                "h": max(ranged),
                "l": min(ranged),
                "c": counted[-1]["p"],
                "v": volume,
                "n": len(counted),
            }
            assert aggregate == {name: bar[name] for name in aggregate}, bar
            vwap = sum(p["p"] * p["s"] for p in counted) / volume
            assert abs(vwap - bar["vw"]) <= 0.00005 + 1e-9
            outside += not (bar["l"] <= bar["o"] <= bar["h"] and bar["l"] <= bar["c"] <= bar["h"])
    assert outside > 0  # bars with open or close outside [low, high] have their prints too


def test_every_regular_print_lies_inside_the_quote_before_it(server: SimulatorServer) -> None:
    window = {"symbols": "AAPL", "start": START, "end": "2024-02-05T14:34:59Z"}
    trades = by_symbol(
        pages(server, "/v2/stocks/trades", "trades", limit=10000, **window), "trades"
    )
    quotes = by_symbol(
        pages(server, "/v2/stocks/quotes", "quotes", limit=10000, **window), "quotes"
    )
    stamps = [quote["t"] for quote in quotes["AAPL"]]
    assert stamps == sorted(stamps)
    position, checked = 0, 0
    for trade in trades["AAPL"]:
        if not counts_toward_range(tuple(trade["c"])):
            continue
        while position + 1 < len(stamps) and stamps[position + 1] <= trade["t"]:
            position += 1
        quote = quotes["AAPL"][position]
        assert quote["t"] <= trade["t"] and quote["bp"] <= trade["p"] <= quote["ap"], (quote, trade)
        assert quote["ap"] > quote["bp"]
        checked += 1
    assert checked > 100


def test_pages_resume_exactly_and_a_foreign_token_is_refused(server: SimulatorServer) -> None:
    window = {"symbols": "AAPL,MSFT", "start": START, "end": "2024-02-05T14:31:59Z"}
    whole = pages(server, "/v2/stocks/trades", "trades", limit=10000, **window)
    paged = pages(server, "/v2/stocks/trades", "trades", limit=97, **window)
    assert by_symbol(paged, "trades") == by_symbol(whole, "trades")
    assert all(sum(len(rows) for rows in page["trades"].values()) <= 97 for page in paged)
    token = paged[0]["next_page_token"]
    other = {**window, "symbols": "AAPL", "page_token": token}
    reply = requests.get(
        f"{server.url}/v2/stocks/quotes", params=other, headers=HEADERS, timeout=30
    )
    assert reply.status_code == 400 and "page_token" in reply.json()["message"]
    single = requests.get(
        f"{server.url}/v2/stocks/AAPL/trades",
        params={"start": START, "end": START},
        headers=HEADERS,
        timeout=30,
    ).json()
    assert single == {"trades": None, "symbol": "AAPL", "next_page_token": None}


def test_alpaca_py_reads_the_simulators_trades_and_quotes(server: SimulatorServer) -> None:
    window = {"symbols": "AAPL", "start": START, "end": "2024-02-05T14:31:59Z"}
    raw_trades = by_symbol(pages(server, "/v2/stocks/trades", "trades", **window), "trades")["AAPL"]
    raw_quotes = by_symbol(pages(server, "/v2/stocks/quotes", "quotes", **window), "quotes")["AAPL"]
    client = StockHistoricalDataClient("demo", "demo", url_override=server.url)
    start = dt.datetime(2024, 2, 5, 14, 30, tzinfo=dt.UTC)
    end = dt.datetime(2024, 2, 5, 14, 31, 59, tzinfo=dt.UTC)
    trades = client.get_stock_trades(
        StockTradesRequest(symbol_or_symbols="AAPL", start=start, end=end)
    )
    quotes = client.get_stock_quotes(
        StockQuotesRequest(symbol_or_symbols="AAPL", start=start, end=end)
    )
    assert [
        (t.price, t.size, t.exchange, t.id, t.conditions, t.tape) for t in trades.data["AAPL"]
    ] == [(r["p"], r["s"], r["x"], r["i"], r["c"], r["z"]) for r in raw_trades]
    assert [
        (q.bid_price, q.ask_price, q.bid_size, q.ask_exchange) for q in quotes.data["AAPL"]
    ] == [(r["bp"], r["ap"], r["bs"], r["ax"]) for r in raw_quotes]
