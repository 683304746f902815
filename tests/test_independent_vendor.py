"""MarketPipe against a second model of the vendors, written from their documentation and
not from MarketPipe's simulator (tests/independent_vendor.py): the FB -> META rename of
2022-06-09 and Twitter's delisting after 2022-10-27, in both vendors' formats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import AlpacaClient, AlpacaConfig, BarsQuery, CorporateActionsClient
from marketpipe.connectors.assets import AlpacaAssetsClient
from marketpipe.connectors.corporate_actions import CorporateActionsQuery
from marketpipe.connectors.models import TradedAs
from marketpipe.connectors.polygon import PolygonClient, PolygonConfig
from marketpipe.ingest.securities import alpaca_security, polygon_security
from marketpipe.markettime.calendar import NEW_YORK, new_york_midnight
from tests.independent_vendor import RENAME, TODAY, IndependentVendor

AS_OF = dt.date(2022, 12, 30)
WEEK = [dt.date(2022, 6, day) for day in (6, 7, 8, 9, 10)]
KEYS = {"key_id": SecretStr("k"), "secret_key": SecretStr("s"), "requests_per_minute": 10_000}


@pytest.fixture(scope="module")
def vendor() -> Iterator[str]:
    with IndependentVendor() as url:
        yield url


def polygon_config(url: str) -> PolygonConfig:
    return PolygonConfig(base_url=url, api_key=SecretStr("p"), requests_per_minute=10_000)


def closes(table: pa.Table) -> list[tuple[dt.date, str, float]]:
    return [
        (stamp.astimezone(NEW_YORK).date(), symbol, close)
        for stamp, symbol, close in zip(
            table["timestamp"].to_pylist(),
            table["symbol"].to_pylist(),
            table["close"].to_pylist(),
            strict=True,
        )
    ]


def test_both_formats_give_a_renamed_security_whole_under_its_symbol(vendor: str) -> None:
    query = BarsQuery(
        symbols=("META",),
        timeframe="1Day",
        start=new_york_midnight(WEEK[0]),
        end=new_york_midnight(WEEK[-1] + dt.timedelta(days=1)),
        asof=WEEK[-1] + dt.timedelta(days=1),
        traded_as=(
            TradedAs(ticker="FB", last=RENAME - dt.timedelta(days=1)),
            TradedAs(ticker="META", first=RENAME),
        ),
    )
    with AlpacaClient(AlpacaConfig(base_url=vendor, **KEYS)) as alpaca:
        from_alpaca = closes(pa.concat_tables(alpaca.fetch_batch(query)))
    polygon_config = PolygonConfig(
        base_url=vendor, api_key=SecretStr("p"), requests_per_minute=10_000
    )
    with PolygonClient(polygon_config) as polygon:
        from_polygon = closes(pa.concat_tables(polygon.fetch_batch(query)))
    assert [day for day, _, _ in from_alpaca] == WEEK
    assert {symbol for _, symbol, _ in from_alpaca} == {"META"}
    assert from_polygon == from_alpaca


def test_both_formats_tell_the_same_tickers_and_delisting(vendor: str) -> None:
    polygon_config = PolygonConfig(
        base_url=vendor, api_key=SecretStr("p"), requests_per_minute=10_000
    )
    with PolygonClient(polygon_config) as polygon:
        meta = polygon_security(polygon, "META", AS_OF, TODAY)
        twitter = polygon_security(polygon, "TWTR", AS_OF, TODAY)
        # Nobody traded as FB at the end of 2022: FB names the security that used it last.
        facebook = polygon_security(polygon, "FB", AS_OF, TODAY)
    config = AlpacaConfig(base_url=vendor, **KEYS)
    with CorporateActionsClient(config) as actions, AlpacaAssetsClient(config) as assets:

        def alpaca_view(symbol: str) -> list:
            query = CorporateActionsQuery(symbols=(symbol,), start=dt.date(2012, 1, 1), end=TODAY)
            stored = pa.concat_tables(actions.fetch_batch(query))
            return alpaca_security(stored, symbol, TODAY, "alpaca", assets.asset)

        alpaca_meta, alpaca_twitter = alpaca_view("META"), alpaca_view("TWTR")
    assert [(row.ticker, row.valid_from, row.valid_to) for row in meta] == [
        ("FB", dt.date(2012, 5, 18), dt.date(2022, 6, 8)),
        ("META", RENAME, None),
    ]
    assert [(row.ticker, row.valid_to) for row in alpaca_meta] == [
        ("FB", dt.date(2022, 6, 8)),
        ("META", None),
    ]
    assert [row.ticker for row in facebook] == ["FB", "META"]
    assert {row.security_id for row in facebook} == {meta[0].security_id}
    (polygon_twitter,) = twitter
    (alpaca_twitter_row,) = alpaca_twitter
    assert polygon_twitter.delisted == alpaca_twitter_row.delisted == dt.date(2022, 10, 28)
