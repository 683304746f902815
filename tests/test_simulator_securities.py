"""The simulator's securities, over real loopback HTTP: a rename (FB became META on
2022-06-09), a delisting (TWTR's last session 2022-10-27), a listing inside a range (ARM,
2023-09-14) and a ticker another company takes up later (an invented second FB), served
as each vendor documents it: Alpaca maps a ticker to its security by ``asof`` (default
today, ``-`` for none, a rename mapped from the day after), Polygon serves tickers as traded
and tells their history in its reference endpoints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from marketpipe.simulator import SimulatorServer
from marketpipe.simulator.api import SimulatorApp, SimulatorConfig
from marketpipe.simulator.cli import build_parser, config_from_args
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.settings import DemoSettings
from tests.securities_book import META_FIGI, SECURITIES, securities_simulator

ALPACA_HEADERS = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    yield from securities_simulator()


def alpaca_days(
    server: SimulatorServer, symbol: str, start: str, end: str, asof: str | None = None
) -> dict[str, list[str]]:
    """The dates of the daily bars Alpaca's endpoint serves, by response key."""
    params = {"symbols": symbol, "timeframe": "1Day", "start": start, "end": end}
    if asof is not None:
        params["asof"] = asof
    response = requests.get(
        f"{server.url}/v2/stocks/bars", params=params, headers=ALPACA_HEADERS, timeout=30
    )
    assert response.status_code == 200, response.text
    return {key: [bar["t"][:10] for bar in bars] for key, bars in response.json()["bars"].items()}


def alpaca_bars(server: SimulatorServer, symbol: str, day: str, asof: str) -> list[dict]:
    end = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    params = {"symbols": symbol, "timeframe": "1Min", "start": day, "end": end, "asof": asof}
    response = requests.get(
        f"{server.url}/v2/stocks/bars", params=params, headers=ALPACA_HEADERS, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["bars"].get(symbol, [])


def polygon(server: SimulatorServer, path: str, **params: str) -> requests.Response:
    url = path if path.startswith("http") else f"{server.url}{path}"
    return requests.get(url, params={**params, "apiKey": "key"}, timeout=30)


def polygon_days(server: SimulatorServer, ticker: str, start: str, end: str) -> list[str]:
    response = polygon(server, f"/v2/aggs/ticker/{ticker}/range/1/day/{start}/{end}")
    assert response.status_code == 200, response.text
    stamps = [bar["t"] for bar in response.json().get("results", [])]
    return [dt.datetime.fromtimestamp(t / 1000, dt.UTC).date().isoformat() for t in stamps]


WEEK_OF_RENAME = ("2022-06-06", "2022-06-10")
ALL_WEEK = ["2022-06-06", "2022-06-07", "2022-06-08", "2022-06-09", "2022-06-10"]


def test_alpaca_maps_a_renamed_ticker_to_its_whole_history_from_the_day_after(server) -> None:
    assert alpaca_days(server, "META", *WEEK_OF_RENAME, asof="2022-06-10") == {"META": ALL_WEEK}
    # The symbol map learns of the rename overnight: on the day itself META is not mapped yet.
    assert alpaca_days(server, "META", *WEEK_OF_RENAME, asof="2022-06-09") == {"META": ALL_WEEK[3:]}
    assert alpaca_days(server, "META", *WEEK_OF_RENAME, asof="-") == {"META": ALL_WEEK[3:]}
    assert alpaca_days(server, "FB", *WEEK_OF_RENAME, asof="-") == {"FB": ALL_WEEK[:3]}
    # Asked by its old name on a day it was used, the security's bars after the rename too.
    assert alpaca_days(server, "FB", *WEEK_OF_RENAME, asof="2022-06-08") == {"FB": ALL_WEEK}
    # One series: FB's bars before the rename are META's when META is mapped.
    mapped = alpaca_bars(server, "META", "2022-06-07", "2022-06-10")
    assert mapped and mapped == alpaca_bars(server, "FB", "2022-06-07", "-")


def test_alpaca_default_asof_is_today_so_a_reused_ticker_names_the_newcomer(server) -> None:
    # Today FB is the second company: asked for 2022 without asof, FB has no bars at all.
    assert alpaca_days(server, "FB", *WEEK_OF_RENAME) == {}
    assert alpaca_days(server, "FB", "2023-03-01", "2023-03-03") == {
        "FB": ["2023-03-01", "2023-03-02", "2023-03-03"]
    }
    second = alpaca_bars(server, "FB", "2023-03-01", "2026-12-01")
    meta = alpaca_bars(server, "META", "2023-03-01", "2026-12-01")
    assert second and meta and second != meta
    # META today is Meta: its history through the rename comes with it.
    assert alpaca_days(server, "META", *WEEK_OF_RENAME) == {"META": ALL_WEEK}


def test_alpaca_serves_a_delisted_security_through_its_last_session(server) -> None:
    days = ["2022-10-24", "2022-10-25", "2022-10-26", "2022-10-27"]
    assert alpaca_days(server, "TWTR", "2022-10-24", "2022-10-31") == {"TWTR": days}
    assert alpaca_days(server, "TWTR", "2022-10-24", "2022-10-31", asof="-") == {"TWTR": days}
    assert alpaca_days(server, "ARM", "2023-09-11", "2023-09-15") == {
        "ARM": ["2023-09-14", "2023-09-15"]
    }


def test_alpaca_refuses_a_malformed_asof(server) -> None:
    params = {"symbols": "META", "timeframe": "1Day", "asof": "June 9"}
    response = requests.get(
        f"{server.url}/v2/stocks/bars", params=params, headers=ALPACA_HEADERS, timeout=30
    )
    assert response.status_code == 400 and response.json()["message"] == "invalid asof: June 9"


def test_polygon_serves_each_ticker_as_traded(server) -> None:
    assert polygon_days(server, "META", *WEEK_OF_RENAME) == ALL_WEEK[3:]
    assert polygon_days(server, "FB", *WEEK_OF_RENAME) == ALL_WEEK[:3]
    assert polygon_days(server, "TWTR", "2022-10-24", "2022-10-31")[-1] == "2022-10-27"
    assert polygon_days(server, "ARM", "2023-09-11", "2023-09-15") == ["2023-09-14", "2023-09-15"]
    assert polygon_days(server, "FB", "2023-02-27", "2023-03-02") == ["2023-03-01", "2023-03-02"]


def test_polygon_ticker_details_are_point_in_time(server) -> None:
    before = polygon(server, "/v3/reference/tickers/META", date="2022-06-08")
    assert before.status_code == 404 and before.json()["status"] == "NOT_FOUND"
    meta = polygon(server, "/v3/reference/tickers/META").json()["results"]
    assert (meta["composite_figi"], meta["list_date"], meta["active"]) == (
        META_FIGI,
        "2012-05-18",
        True,
    )
    old_fb = polygon(server, "/v3/reference/tickers/FB", date="2022-01-03").json()["results"]
    assert old_fb["composite_figi"] == META_FIGI
    new_fb = polygon(server, "/v3/reference/tickers/FB").json()["results"]
    assert new_fb["name"] == "Second FB Corp." and new_fb["composite_figi"] != META_FIGI
    twitter = polygon(server, "/v3/reference/tickers/TWTR").json()["results"]
    assert twitter["active"] is False
    assert twitter["delisted_utc"] == "2022-10-28T04:00:00Z"
    plain = polygon(server, "/v3/reference/tickers/AAPL").json()["results"]
    assert plain["active"] is True and "delisted_utc" not in plain


def test_polygon_lists_the_tickers_of_a_day_page_by_page(server) -> None:
    def listed(**params: str) -> list[str]:
        tickers, response = [], polygon(server, "/v3/reference/tickers", **params)
        while True:
            body = response.json()
            assert response.status_code == 200, body
            tickers += [row["ticker"] for row in body["results"]]
            if "next_url" not in body:
                return tickers
            response = polygon(server, body["next_url"])

    assert listed(date="2022-06-01", limit="1") == ["FB", "TWTR"]
    assert listed(date="2022-06-10") == ["META", "TWTR"]
    assert listed(date="2026-12-01") == ["ARM", "FB", "META"]
    assert listed(date="2026-12-01", active="false") == ["TWTR"]
    (twitter,) = polygon(server, "/v3/reference/tickers", ticker="TWTR", active="false").json()[
        "results"
    ]
    assert twitter["delisted_utc"] == "2022-10-28T04:00:00Z"
    assert polygon(server, "/v3/reference/tickers", offset="5").status_code == 400


def test_polygon_ticker_events_tell_a_securitys_ticker_history(server) -> None:
    expected = [
        {"ticker_change": {"ticker": "META"}, "type": "ticker_change", "date": "2022-06-09"},
        {"ticker_change": {"ticker": "FB"}, "type": "ticker_change", "date": "2012-05-18"},
    ]
    by_ticker = polygon(server, "/vX/reference/tickers/META/events").json()["results"]
    assert by_ticker["events"] == expected and by_ticker["composite_figi"] == META_FIGI
    by_figi = polygon(server, f"/vX/reference/tickers/{META_FIGI}/events").json()["results"]
    assert by_figi == by_ticker
    newcomer = polygon(server, "/vX/reference/tickers/FB/events").json()["results"]
    assert newcomer["name"] == "Second FB Corp."
    assert polygon(server, "/vX/reference/tickers/NOPE/events").status_code == 404
    assert polygon(server, "/vX/reference/tickers/META/events", types="ipo").status_code == 400


def test_alpaca_corporate_actions_carry_the_rename_and_the_takeover(server) -> None:
    def actions_of_2022(symbol: str) -> dict[str, list[dict[str, Any]]]:
        response = requests.get(
            f"{server.url}/v1/corporate-actions",
            params={"symbols": symbol, "start": "2022-01-01", "end": "2022-12-31"},
            headers=ALPACA_HEADERS,
            timeout=30,
        )
        return response.json()["corporate_actions"]

    (record,) = actions_of_2022("META")["name_changes"]
    assert (record["old_symbol"], record["new_symbol"], record["process_date"]) == (
        "FB",
        "META",
        "2022-06-09",
    )
    assert record["old_cusip"] == record["new_cusip"]  # a symbol-only change
    (merger,) = actions_of_2022("TWTR")["cash_mergers"]
    assert (merger["acquiree_symbol"], merger["rate"], merger["effective_date"]) == (
        "TWTR",
        54.2,
        "2022-10-28",
    )


def test_alpaca_assets_name_todays_securities(server) -> None:
    def asset(identifier: str) -> requests.Response:
        return requests.get(
            f"{server.url}/v2/assets/{identifier}", headers=ALPACA_HEADERS, timeout=30
        )

    meta, new_fb, twitter = (asset(name).json() for name in ("META", "FB", "TWTR"))
    assert (meta["symbol"], meta["status"]) == ("META", "active")
    assert new_fb["name"] == "Second FB Corp." and new_fb["id"] != meta["id"]
    assert (twitter["status"], twitter["tradable"]) == ("inactive", False)
    assert asset(meta["id"]).json() == meta
    missing = asset("NOPE")
    assert missing.status_code == 404 and missing.json()["code"] == 40410000
    inactive = requests.get(
        f"{server.url}/v2/assets", params={"status": "inactive"}, headers=ALPACA_HEADERS, timeout=30
    ).json()
    assert [item["symbol"] for item in inactive] == ["TWTR"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [
                {"name": "A", "tickers": {"XYZ": "2020-01-02"}},
                {"name": "B", "tickers": {"XYZ": "2021-01-04"}},
            ],
            "ticker XYZ is used by 'A' (from 2020-01-02) and 'B' (from 2021-01-04) at once",
        ),
        (
            [{"name": "A", "tickers": {"XYZ": "2020-01-02", "ABC": "2019-01-02"}}],
            "its tickers' first dates must increase",
        ),
        ([{"name": "A", "tickers": {"XYZ": "someday"}}], "'someday' is not a date"),
        ([{"tickers": {"XYZ": "2020-01-02"}}], "needs a name and tickers"),
    ],
)
def test_an_impossible_book_is_refused_naming_the_problem(
    records: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SecurityBook.from_records(records)
    with pytest.raises(ValueError, match="securities"):
        DemoSettings(securities=records)


def test_a_delisting_frees_the_ticker_for_another_company() -> None:
    book = SecurityBook.from_records(
        [
            {"name": "Old", "tickers": {"XYZ": "2020-01-02"}, "delisted": "2021-06-30"},
            {"name": "New", "tickers": {"XYZ": "2021-07-01"}},
        ]
    )
    assert book.holder("XYZ", dt.date(2021, 6, 30)).name == "Old"
    assert book.holder("XYZ", dt.date(2021, 7, 1)).name == "New"


def test_splits_of_a_security_with_a_ticker_history_are_refused() -> None:
    split = {
        "id": "s1",
        "symbol": "META",
        "old_rate": 1,
        "new_rate": 2,
        "ex_date": "2023-01-03",
        "process_date": "2023-01-03",
    }
    config = SimulatorConfig(securities=SECURITIES, corporate_actions=(("forward_splits", split),))
    with pytest.raises(ValueError, match="splits and dividends of META are not simulated"):
        SimulatorApp(config)


def test_the_command_line_reads_a_securities_file(tmp_path: Path) -> None:
    path = tmp_path / "securities.yaml"
    path.write_text(yaml.safe_dump(list(SECURITIES)))
    config = config_from_args(build_parser().parse_args(["--securities", str(path)]))
    assert SecurityBook.from_records(config.securities).holder("META", dt.date(2023, 1, 3))
    path.write_text("name: not a list")
    with pytest.raises(ValueError, match="expected a list"):
        config_from_args(build_parser().parse_args(["--securities", str(path)]))
