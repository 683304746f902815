"""The security master: what each vendor says about a symbol's security, over real loopback
HTTP to the simulator (which models the FB -> META rename of 2022-06-09, TWTR's delisting
after 2022-10-27, ARM's listing on 2023-09-14 and an invented later company taking up FB),
and the master's file in the lake."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from marketpipe.connectors import CorporateActionsClient
from marketpipe.connectors.assets import AlpacaAssetsClient
from marketpipe.connectors.corporate_actions import CorporateActionsQuery
from marketpipe.ingest.securities import alpaca_security, polygon_security, refresh_securities
from marketpipe.lake.compare_securities import security_differences
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.securities import (
    SECURITIES_KEY,
    TickerInterval,
    publish_securities,
    read_securities,
    securities_of,
)
from marketpipe.markettime.calendar import NEW_YORK
from marketpipe.simulator import SimulatorServer
from marketpipe.simulator.assets_api import asset_id
from tests.conftest import alpaca_client, polygon_client, start_simulator
from tests.securities_book import META_FIGI, SECURITIES, TODAY, securities_simulator

ASKED = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    yield from securities_simulator()


def polygon_view(server: SimulatorServer, symbol: str, as_of: dt.date) -> list[tuple]:
    with polygon_client(server) as client:
        rows = polygon_security(client, symbol, as_of, ASKED)
    return [(row.security_id, row.ticker, row.valid_from, row.valid_to) for row in rows]


def test_polygon_names_the_security_a_ticker_had_on_the_ranges_last_day(server) -> None:
    meta = [
        (META_FIGI, "FB", dt.date(2012, 5, 18), dt.date(2022, 6, 8)),
        (META_FIGI, "META", dt.date(2022, 6, 9), None),
    ]
    assert polygon_view(server, "META", dt.date(2022, 12, 30)) == meta
    # FB on a day it was Facebook's names Meta; on a later day, the newcomer that took it up.
    assert polygon_view(server, "FB", dt.date(2021, 12, 31)) == meta
    ((newcomer, ticker, start, end),) = polygon_view(server, "FB", dt.date(2024, 6, 28))
    assert newcomer != META_FIGI and (ticker, start, end) == ("FB", dt.date(2023, 3, 1), None)
    with polygon_client(server) as client:
        (twitter,) = polygon_security(client, "TWTR", dt.date(2023, 6, 30), ASKED)
        (arm,) = polygon_security(client, "ARM", dt.date(2023, 12, 29), ASKED)
        assert polygon_security(client, "NOPE", dt.date(2023, 6, 30), ASKED) == []
    assert (twitter.delisted, twitter.listed, twitter.name) == (
        dt.date(2022, 10, 28),
        dt.date(2013, 11, 7),
        "Twitter, Inc.",
    )
    assert (arm.listed, arm.delisted, arm.vendor) == (dt.date(2023, 9, 14), None, "polygon")


def test_polygon_finds_a_ticker_nobody_uses_any_more_among_the_delisted(server) -> None:
    with polygon_client(server) as client:
        (listing,) = client.delisted_listings("TWTR")
        assert client.delisted_listings("META") == []
    assert listing["delisted_utc"] == "2022-10-28T04:00:00Z"


def test_polygon_tells_a_plain_ticker_as_one_interval(server) -> None:
    with polygon_client(server) as client:
        (apple,) = polygon_security(client, "AAPL", dt.date(2024, 2, 29), ASKED)
    assert (apple.ticker, apple.valid_from, apple.valid_to, apple.delisted) == (
        "AAPL",
        dt.date(1990, 1, 2),
        None,
        None,
    )
    assert apple.security_id.startswith("BBG")


def alpaca_view(server: SimulatorServer, symbol: str, pinned: str | None = None) -> list:
    query = CorporateActionsQuery(
        symbols=(symbol,), start=dt.date(2012, 1, 1), end=dt.date(2026, 12, 1)
    )
    with alpaca_client(server, client_class=CorporateActionsClient) as client:
        tables = list(client.fetch_batch(query))
    with alpaca_client(server, client_class=AlpacaAssetsClient) as assets:
        actions = pa.concat_tables(tables) if tables else None
        return alpaca_security(actions, symbol, ASKED, "alpaca", assets.asset, pinned)


def test_alpaca_tells_renames_and_delistings_through_corporate_actions(server) -> None:
    meta = alpaca_view(server, "META")
    facebook = asset_id("FB@2012-05-18")  # the asset keeps its id across the rename
    assert [(row.security_id, row.ticker, row.valid_from, row.valid_to) for row in meta] == [
        (facebook, "FB", None, dt.date(2022, 6, 8)),
        (facebook, "META", dt.date(2022, 6, 9), None),
    ]
    assert {(row.name, row.endpoint) for row in meta} == {
        ("Meta Platforms, Inc.", "/v1/corporate-actions, /v2/assets")
    }
    (twitter,) = alpaca_view(server, "TWTR")
    assert (twitter.delisted, twitter.vendor) == (dt.date(2022, 10, 28), "alpaca")
    (apple,) = alpaca_view(server, "AAPL")
    assert (apple.ticker, apple.valid_from, apple.delisted) == ("AAPL", None, None)


def test_alpaca_names_the_company_that_took_a_renamed_ticker_up_unless_pinned(server) -> None:
    # FB's corporate actions tell of its rename to META; the assets say another company
    # holds FB today. A new symbol FB names that newcomer; a lake whose FB series was
    # built from Facebook's bars stays with Facebook.
    (newcomer,) = alpaca_view(server, "FB")
    assert (newcomer.security_id, newcomer.ticker, newcomer.name) == (
        asset_id("FB@2023-03-01"),
        "FB",
        "Second FB Corp.",
    )
    pinned = alpaca_view(server, "FB", pinned=asset_id("FB@2012-05-18"))
    assert [row.ticker for row in pinned] == ["FB", "META"]


def test_the_master_file_keeps_when_a_fact_was_first_asked(server, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()

    def ask(on: dt.date, as_of: dt.date = dt.date(2022, 12, 30)):
        def security_of(symbol: str, pinned: str | None) -> list:
            with polygon_client(server) as client:
                return polygon_security(client, symbol, as_of, on, pinned)

        return security_of

    rows, changed = refresh_securities(lake, ["META", "TWTR"], ask(dt.date(2026, 11, 30)))
    assert changed and len(rows) == 3
    first_bytes = (lake / SECURITIES_KEY).read_bytes()
    again, changed = refresh_securities(lake, ["META", "TWTR"], ask(dt.date(2026, 12, 1)))
    assert not changed and (lake / SECURITIES_KEY).read_bytes() == first_bytes
    assert {row.asked_on for row in again} == {dt.date(2026, 11, 30)}
    securities = securities_of(read_securities(lake))
    assert securities["META"].tickers() == ["FB", "META"]
    assert securities["META"].ticker_on(dt.date(2022, 6, 8)) == "FB"
    assert securities["TWTR"].status(dt.date(2026, 12, 1)) == "delisted on 2022-10-28"
    assert not securities["TWTR"].trades_on(dt.date(2022, 10, 28))
    assert securities["TWTR"].trades_on(dt.date(2022, 10, 27))
    # Another symbol asked about later leaves the others' rows as they were.
    rows, changed = refresh_securities(
        lake, ["ARM"], ask(dt.date(2026, 12, 1), dt.date(2023, 12, 29))
    )
    assert changed and sorted({row.symbol for row in rows}) == ["ARM", "META", "TWTR"]
    (arm,) = securities_of(rows)["ARM"].intervals
    assert dataclasses.replace(arm, asked_on=ASKED) == arm


def test_a_symbol_keeps_naming_the_security_its_series_was_built_from(
    server, tmp_path: Path
) -> None:
    # Backfilled through 2022 FB named Facebook (as META since June); asked as of 2024 it
    # names the newcomer, but the lake's FB series stays Facebook's.
    lake = tmp_path / "lake"
    lake.mkdir()

    def ask(as_of: dt.date):
        def security_of(symbol: str, pinned: str | None) -> list:
            with polygon_client(server) as client:
                return polygon_security(client, symbol, as_of, ASKED, pinned)

        return security_of

    first, _ = refresh_securities(lake, ["FB"], ask(dt.date(2022, 12, 30)))
    later, changed = refresh_securities(lake, ["FB"], ask(dt.date(2024, 6, 28)))
    assert not changed and later == first
    assert [row.ticker for row in later] == ["FB", "META"]
    assert {row.security_id for row in later} == {META_FIGI}
    with polygon_client(server) as client:
        newcomer = polygon_security(client, "FB", dt.date(2024, 6, 28), ASKED)
    assert [(row.ticker, row.valid_from) for row in newcomer] == [("FB", dt.date(2023, 3, 1))]


def test_reconcile_compares_securities_not_ids(tmp_path: Path) -> None:
    def master(lake: Path, *rows: tuple[str, str, dt.date | None, dt.date | None]) -> LocalStore:
        lake.mkdir()
        publish_securities(
            lake,
            [
                TickerInterval(
                    "FB", security_id, ticker, first, last, None, None, None, "v", "e", ASKED
                )
                for security_id, ticker, first, last in rows
            ],
        )
        return LocalStore(lake)

    facebook = [
        ("FB", dt.date(2012, 5, 18), dt.date(2022, 6, 8)),
        ("META", dt.date(2022, 6, 9), None),
    ]
    by_figi = master(tmp_path / "a", *((META_FIGI, *row) for row in facebook))
    by_asset = master(tmp_path / "b", *(("asset-1", *row) for row in facebook))
    newcomer = master(tmp_path / "c", ("asset-2", "FB", dt.date(2023, 3, 1), None))
    assert security_differences(by_figi, by_asset, None).num_rows == 0
    (differs,) = security_differences(by_figi, newcomer, None).to_pylist()
    assert (differs["symbol"], differs["kind"]) == ("FB", "security_differs")
    assert differs["timestamp"].astimezone(NEW_YORK).date() == dt.date(2022, 6, 9)


def test_many_assets_are_learned_from_one_listing_and_answer_as_one_by_one() -> None:
    plain = [f"PLN{letter}" for letter in "ABCDEFGHIJKL"]
    simulator = start_simulator(
        market_now=TODAY,
        securities=SECURITIES,
        corporate_actions=(),
        unknown_symbols=frozenset({"NOPE"}),
        listed_tickers=frozenset(plain),
    )
    asked = [*plain, "META", "FB", "TWTR", "NOPE", "ZZZZ"]
    try:
        with alpaca_client(simulator, client_class=AlpacaAssetsClient) as one_by_one:
            expected = {key: one_by_one.asset(key) for key in asked}
        simulator.request_log.clear()
        with alpaca_client(simulator, client_class=AlpacaAssetsClient) as assets:
            assets.prefetch(asked)
            assert {key: assets.asset(key) for key in asked} == expected
            assets.prefetch(asked)  # listed once per client
        paths = [entry.path for entry in simulator.request_log.entries]
    finally:
        simulator.stop()
    # One listing (the plain tickers, META and the newcomer under FB), then one request for
    # each ticker it does not hold: TWTR (inactive), NOPE (unknown) and ZZZZ (not listed).
    assert paths == ["/v2/assets", "/v2/assets/TWTR", "/v2/assets/NOPE", "/v2/assets/ZZZZ"]
    assert expected["NOPE"] is None and expected["TWTR"].status == "inactive"
    assert expected["FB"].name == "Second FB Corp."
