"""The simulator behaves as the real API does about time, plans and odd bars.

Facts from ../shared/reference/alpaca-live-data.md: a minute bar exists only once its minute
is over; wider bars are rolled up from those (the current one is partial); daily bars are
recalculated the next morning; the free plan refuses SIP data of the last 15 minutes with a
403 and ``code`` 42210000; open or close can lie outside [low, high].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from marketpipe.connectors import SubscriptionError
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SimulatorServer, SyntheticMarket
from marketpipe.simulator.api import RECENT_SIP_CODE, RECENT_SIP_MESSAGE
from tests.conftest import alpaca_client, bars_query, start_simulator
from tests.test_simulator import get

REFUSAL = {"code": RECENT_SIP_CODE, "message": RECENT_SIP_MESSAGE}
DAY = "2026-11-24"


def new_york(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@contextmanager
def simulator_at(now: dt.datetime, **config: object) -> Iterator[SimulatorServer]:
    server = start_simulator(market_now=now, **config)
    try:
        yield server
    finally:
        server.stop()


def bars_of(response: requests.Response, symbol: str = "AAPL") -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    return response.json()["bars"].get(symbol) or []


def stamps(bars: list[dict[str, object]]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(str(bar["t"])).astimezone(NEW_YORK) for bar in bars]


def day_query(**params: str) -> dict[str, str]:
    return {
        "symbols": "AAPL",
        "timeframe": "1Min",
        "start": f"{DAY}T04:00:00-05:00",
        "end": f"{DAY}T23:59:00-05:00",
        "limit": "10000",
        "feed": "sip",
        **params,
    }


def test_no_bar_exists_before_its_minute_is_over() -> None:
    with simulator_at(new_york(2026, 11, 24, 14, 0, 59)) as server:
        minute = bars_of(get(server, **day_query()))
        five = bars_of(get(server, **day_query(timeframe="5Min")))
    assert stamps(minute)[-1] == new_york(2026, 11, 24, 13, 59)
    # The 13:55 five-minute bar is the roll-up of the minutes so far: 13:55..13:59 here.
    assert stamps(five)[-1] == new_york(2026, 11, 24, 13, 55)
    with simulator_at(new_york(2026, 11, 24, 13, 57, 30)) as server:
        partial = bars_of(get(server, **day_query(timeframe="5Min")))[-1]
    assert stamps([partial])[0] == new_york(2026, 11, 24, 13, 55)
    assert partial["v"] < five[-1]["v"]  # the bar in progress changes until its window ends
    with simulator_at(new_york(2026, 11, 25, 0, 0)) as server:
        final = bars_of(get(server, **day_query()))
    assert (
        stamps(final)[-1]
        < new_york(2026, 11, 24, 20, 0)
        <= stamps(final)[-1] + dt.timedelta(minutes=60)
    )
    assert final[: len(minute)] == minute  # bars already over never change
    with simulator_at(new_york(2026, 11, 24, 3, 0)) as server:
        assert bars_of(get(server, **day_query())) == []  # a session that has not begun


def test_daily_bars_are_provisional_until_recalculated_the_next_morning() -> None:
    query = {"symbols": "AAPL", "timeframe": "1Day", "start": DAY, "end": DAY}
    with simulator_at(new_york(2026, 11, 24, 21, 0)) as server:
        (evening,) = bars_of(get(server, **query))
    with simulator_at(new_york(2026, 11, 25, 9, 0)) as server:
        (morning,) = bars_of(get(server, **query))
    with simulator_at(new_york(2026, 12, 31, 12, 0)) as server:
        (later,) = bars_of(get(server, **query))
    assert morning == later
    # Trades that count only towards daily volume arrive with the recalculation.
    assert morning["v"] > evening["v"]
    assert {k: morning[k] for k in "toc"} == {k: evening[k] for k in "toc"}


def test_free_plan_refuses_recent_sip_data_exactly_as_alpaca_does() -> None:
    now = new_york(2026, 11, 24, 20, 30)
    with simulator_at(now, plan="free") as server:
        recent = get(server, **day_query(end="2026-11-25T01:16:00Z"))  # 20:16 New York
        future = get(server, **day_query(end="2026-11-30T00:00:00Z"))
        old_enough = get(server, **day_query(end="2026-11-25T01:15:00Z"))
        iex = get(server, **day_query(feed="iex"))
        latest_sip = get(server, "/v2/stocks/bars/latest", symbols="AAPL", feed="sip")
        delayed = get(server, "/v2/stocks/bars/latest", symbols="AAPL", feed="delayed_sip")
        # No feed on a recent range is silently IEX; no end is "15 minutes ago".
        no_feed = get(server, **{**day_query(end="2026-11-25T01:29:00Z"), "feed": None})  # omitted
        no_end = {k: v for k, v in day_query().items() if k != "end"}
        default_end = get(server, **no_end)
    for refused in (recent, future, latest_sip):
        assert refused.status_code == 403
        assert refused.json() == REFUSAL
    assert bars_of(old_enough) and bars_of(iex)
    assert bars_of(no_feed) == bars_of(iex)
    assert bars_of(default_end) == bars_of(old_enough)
    (delayed_bar,) = delayed.json()["bars"].values()
    assert stamps([delayed_bar])[0] <= new_york(2026, 11, 24, 20, 14)
    with simulator_at(now) as paid:
        assert get(paid, **day_query(end="2026-11-30T00:00:00Z")).status_code == 200
        latest = get(paid, "/v2/stocks/bars/latest", symbols="AAPL", feed="sip").json()["bars"]
    assert stamps([latest["AAPL"]])[0] == new_york(2026, 11, 24, 19, 59)


@pytest.mark.parametrize("feed", ["sip", "iex"])
def test_a_few_bars_have_open_or_close_outside_low_high(feed: str) -> None:
    market = SyntheticMarket(seed=7)
    sessions = trading_sessions(dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    bars = [bar for s in sessions for bar in market.bars("AAPL", s, feed, Timeframe.parse("1Min"))]
    outside = [bar for bar in bars if max(bar.o, bar.c) > bar.h or min(bar.o, bar.c) < bar.l]
    assert 0.001 < len(outside) / len(bars) < 0.01
    assert all(bar.h >= bar.l > 0 for bar in bars)
    clean = SyntheticMarket(seed=7, outside_range_rate=0)
    same = [bar for s in sessions for bar in clean.bars("AAPL", s, feed, Timeframe.parse("1Min"))]
    assert not [bar for bar in same if max(bar.o, bar.c) > bar.h or min(bar.o, bar.c) < bar.l]
    assert [(bar.t, bar.h, bar.l, bar.v) for bar in same] == [(b.t, b.h, b.l, b.v) for b in bars]


def test_a_recent_sip_refusal_is_explained_and_never_retried() -> None:
    now = new_york(2026, 11, 24, 20, 10)
    query = bars_query(start=new_york(2026, 11, 24, 4), end=new_york(2026, 11, 24, 19, 59, 59))
    with simulator_at(now, plan="free") as server, alpaca_client(server, max_attempts=5) as client:
        with pytest.raises(SubscriptionError) as caught:
            list(client.fetch_batch(query))
        assert len(server.request_log.entries) == 1
    message = str(caught.value)
    assert caught.value.status == 403
    for words in (
        "subscription does not permit querying recent SIP data",
        "feed sip",
        "free plan",
        "settle_minutes",
        "feed: iex",
        "not retried",
    ):
        assert words in message


def test_the_unknown_symbol_check_works_on_the_free_plan() -> None:
    now = new_york(2026, 11, 24, 14, 0)
    query = bars_query(
        ("AAPL", "NEWCO", "ZZZZ"), start=new_york(2024, 1, 2), end=new_york(2024, 1, 2, 23)
    )
    listings = {"NEWCO": dt.date(2026, 6, 1)}
    with (
        simulator_at(
            now, plan="free", listings=listings, unknown_symbols=frozenset({"ZZZZ"})
        ) as server,
        alpaca_client(server) as client,
    ):
        assert client.unknown_symbols(("NEWCO", "ZZZZ"), query) == {"ZZZZ"}
        (latest,) = server.request_log.entries
    assert latest.path == "/v2/stocks/bars/latest" and latest.params["feed"] == "delayed_sip"
    assert latest.status == 200
