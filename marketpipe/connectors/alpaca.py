"""Alpaca Market Data v2 stock bars: request construction and page parsing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, TypeVar

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from marketpipe.connectors.auth import AlpacaKeyAuth, AuthStrategy
from marketpipe.connectors.base_api_client import BaseApiClient, Page
from marketpipe.connectors.config import AlpacaConfig, ClientConfig
from marketpipe.connectors.errors import (
    ApiError,
    ConnectorError,
    ResponseFormatError,
    SubscriptionError,
)
from marketpipe.connectors.models import (
    OHLCV,
    OHLCV_SCHEMA,
    Symbol,
    TradedAs,
    labelled_rows,
    ticker_on,
)
from marketpipe.connectors.transport import RequestSpec
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.markettime.timeutil import format_rfc3339

QueryT = TypeVar("QueryT")
Feed = Literal["sip", "iex", "boats", "otc"]
# The free plan's refusal of SIP data of the last 15 minutes; some captures carry no `code`,
# so the message text decides.
_RECENT_SIP_REFUSAL = "subscription does not permit querying recent sip data"
# Latest-bar endpoints serve SIP 15 minutes late to every plan; `sip` itself is refused on
# the free plan, and whether a symbol exists does not depend on the last 15 minutes.
_LATEST_FEED = {"sip": "delayed_sip"}
ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})
_BAR_FIELDS = ("t", "o", "h", "l", "c", "v")


def check_adjustment(value: str) -> str:
    """Accept one adjustment or a comma-separated combination such as ``split,spin-off``."""
    parts = [part.strip() for part in value.split(",")]
    unknown = [part for part in parts if part not in ADJUSTMENTS]
    if unknown or not parts:
        raise ValueError(
            f"adjustment {value!r} is not valid; use one of {', '.join(sorted(ADJUSTMENTS))} "
            "or a comma-separated combination"
        )
    return ",".join(parts)


class BarsQuery(BaseModel):
    """Which bars to fetch: symbols, timeframe and an inclusive UTC time range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: tuple[Symbol, ...] = Field(min_length=1, description="Tickers to fetch")
    timeframe: str = Field("1Min", description="Bar width, e.g. 1Min, 5Min, 1Hour, 1Day")
    start: AwareDatetime = Field(description="First bar start to include (UTC)")
    end: AwareDatetime = Field(description="Last bar start to include (UTC)")
    feed: Feed = Field("sip", description="Data feed: sip (all exchanges), iex, boats or otc")
    adjustment: str = Field("raw", description="Corporate-action adjustment")
    endpoint: Literal["multi", "single"] = Field(
        "multi", description="multi = /v2/stocks/bars; single = /v2/stocks/{symbol}/bars"
    )
    asof: dt.date | None = Field(
        None,
        description="Alpaca: the day whose symbol map names the security asked for (its "
        "whole history is returned across renames); None: the vendor's default, today",
    )
    traded_as: tuple[TradedAs, ...] = Field(
        (),
        description="The tickers the (one) symbol's security traded under, oldest first; "
        "its bars are asked for under them and labelled with the symbol. Empty: the "
        "symbol is its own ticker throughout",
    )

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        return str(Timeframe.parse(value))

    @field_validator("adjustment")
    @classmethod
    def _check_adjustment(cls, value: str) -> str:
        return check_adjustment(value)

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({symbol for symbol in value if value.count(symbol) > 1})
        if duplicates:
            raise ValueError(f"symbols are listed more than once: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _check_range(self) -> BarsQuery:
        if self.end < self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})"
            )
        if self.endpoint == "single" and len(self.symbols) != 1:
            raise ValueError("endpoint 'single' takes exactly one symbol")
        if self.traded_as and len(self.symbols) != 1:
            raise ValueError("traded_as belongs to exactly one symbol")
        return self

    def ticker_on(self, day: dt.date) -> str:
        """The ticker the (first) symbol's security traded under on ``day``: from
        :attr:`traded_as` (the nearest interval when ``day`` falls outside them all), else
        the symbol itself."""
        return ticker_on(self.traded_as, self.symbols[0], day)

    def labelled(self, table: pa.Table) -> pa.Table:
        """``table`` with its rows labelled with the query's symbol when they were asked for
        under another ticker (see :attr:`traded_as`)."""
        if not self.traded_as or table.num_rows == 0:
            return table
        return labelled_rows(table, self.symbols[0])


def bars_table(groups: Iterable[tuple[str, Any]], where: str) -> pa.Table:
    """Build a canonical OHLCV table from ``(symbol, [alpaca bar, ...])`` groups.

    This checks structure only (fields present, types convertible, timestamps with an
    offset); value checks such as high >= low belong to the storage layer's validation.
    """
    symbols: list[str] = []
    columns: dict[str, list[Any]] = {name: [] for name in (*_BAR_FIELDS, "n", "vw")}
    for symbol, rows in groups:
        if rows is None:
            continue
        if not isinstance(symbol, str) or not isinstance(rows, list):
            raise ResponseFormatError(f"{where}: bars for {symbol!r} are not a list")
        try:
            for name in _BAR_FIELDS:
                columns[name].extend([row[name] for row in rows])
            for name in ("n", "vw"):
                columns[name].extend([row.get(name) for row in rows])
        except KeyError as exc:
            raise ResponseFormatError(f"{where}: a bar for {symbol} lacks field {exc}") from None
        except (TypeError, AttributeError):
            raise ResponseFormatError(f"{where}: a bar for {symbol} is not an object") from None
        symbols.extend([symbol] * len(rows))
    try:
        arrays = [
            pa.array(symbols, pa.string()),
            pa.array(columns["t"], pa.string()).cast(OHLCV_SCHEMA.field("timestamp").type),
            *(pa.array(columns[name], pa.float64()) for name in ("o", "h", "l", "c", "v")),
            pa.array(columns["n"], pa.int64()),
            pa.array(columns["vw"], pa.float64()),
        ]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResponseFormatError(f"{where}: bars have a malformed value: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=OHLCV_SCHEMA)


class AlpacaDataClient(BaseApiClient[QueryT]):
    """What every Alpaca Market Data endpoint shares: key headers and ``next_page_token``."""

    vendor: ClassVar[str] = "alpaca"
    credential_variables: ClassVar[tuple[str, ...]] = (
        AlpacaConfig.ENV_KEY_ID,
        AlpacaConfig.ENV_SECRET_KEY,
    )

    def default_auth(self, config: ClientConfig) -> AuthStrategy:
        """Alpaca's key-id / secret-key headers from the config."""
        if not isinstance(config, AlpacaConfig):
            raise TypeError("Alpaca clients need an AlpacaConfig (or an explicit auth=)")
        return AlpacaKeyAuth(config.key_id, config.secret_key)

    def next_cursor(self, page: Page) -> str | None:
        """``next_page_token``; a null or empty token ends pagination."""
        payload = page.payload
        token = payload.get("next_page_token") if isinstance(payload, dict) else None
        return token or None


class AlpacaClient(AlpacaDataClient[BarsQuery]):
    """Alpaca Market Data v2 historical stock bars (``GET /v2/stocks/bars``)."""

    dataset = OHLCV

    def build_request(self, query: BarsQuery, cursor: str | None) -> RequestSpec:
        """The bars request for ``query``, continuing at page token ``cursor``."""
        params = [
            ("timeframe", query.timeframe),
            ("start", format_rfc3339(query.start)),
            ("end", format_rfc3339(query.end)),
            ("limit", str(self.config.page_size)),
            ("adjustment", query.adjustment),
            ("feed", query.feed),
        ]
        if query.asof is not None:
            params.append(("asof", query.asof.isoformat()))
        # A renamed security is asked for under its ticker on the asof's eve, the last day
        # the symbol map names it: Alpaca returns its earlier tickers' bars with it.
        symbols = query.symbols
        if query.traded_as:
            current = query.traded_as[-1].ticker
            eve = query.asof - dt.timedelta(days=1) if query.asof else None
            symbols = (query.ticker_on(eve) if eve else current,)
        if query.endpoint == "single":
            path = f"/v2/stocks/{symbols[0]}/bars"
        else:
            path = "/v2/stocks/bars"
            params.insert(0, ("symbols", ",".join(symbols)))
        if cursor is not None:
            params.append(("page_token", cursor))
        return RequestSpec(path=path, params=tuple(params), endpoint="stocks/bars")

    def explain(self, error: ApiError) -> ConnectorError:
        """Name the plan, the feed and the fix when Alpaca refuses recent SIP data."""
        if error.status != 403 or _RECENT_SIP_REFUSAL not in error.message.lower():
            return super().explain(error)
        return SubscriptionError(
            403,
            f"{error.message} (feed sip): Alpaca's free plan serves SIP bars only once they "
            "are 15 minutes old. MarketPipe asks only for final sessions, so this means "
            "settle_minutes is below 15 or this machine's clock (or MARKETPIPE_NOW) is ahead. "
            "Fix the clock, keep settle_minutes >= 15, use 'alpaca: {feed: iex}', or use a "
            "plan with real-time SIP data; not retried",
            error.endpoint,
        )

    def latest_bars(self, symbols: tuple[str, ...], feed: str = "sip") -> dict[str, Any]:
        """``GET /v2/stocks/bars/latest``: each known symbol's most recent bar (raw JSON).

        ``feed`` may be ``delayed_sip`` (SIP as of 15 minutes ago, served to every plan).
        """
        spec = RequestSpec(
            path="/v2/stocks/bars/latest",
            params=(("symbols", ",".join(symbols)), ("feed", feed)),
            endpoint="stocks/bars/latest",
        )
        payload = self.send(spec).payload
        bars = payload.get("bars") if isinstance(payload, dict) else None
        if not isinstance(bars, dict):
            raise ResponseFormatError("stocks/bars/latest: expected a 'bars' map")
        return bars

    def use_assets(self, asset_of: Callable[[str], object | None]) -> None:
        """Tell unknown symbols by Alpaca's assets (``asset_of``: ``None`` for a 404), as its
        documentation advises: a bars answer without bars is the same for a typo and a
        delisted security, whose asset stays (``inactive``)."""
        self._asset_of: Callable[[str], object | None] | None = asset_of

    def unknown_symbols(self, symbols: tuple[str, ...], query: BarsQuery) -> set[str]:
        """Symbols Alpaca has no asset for; without the assets (see :meth:`use_assets`),
        those without a latest bar on the query's feed (SIP: delayed SIP, which every plan
        may read)."""
        asset_of = getattr(self, "_asset_of", None)
        if asset_of is not None:
            return {symbol for symbol in symbols if asset_of(symbol) is None}
        feed = _LATEST_FEED.get(query.feed, query.feed)
        return set(symbols) - set(self.latest_bars(symbols, feed))

    def parse_page(self, page: Page, query: BarsQuery) -> pa.Table:
        """Handle both endpoints' shapes: ``bars`` as a map (maybe ``{}``), a list or null."""
        where = f"{page.request.name} page {page.number}"
        payload = page.payload
        if not isinstance(payload, dict) or "bars" not in payload:
            raise ResponseFormatError(f"{where}: expected a JSON object with a 'bars' key")
        bars = payload["bars"]
        if bars is None:
            return bars_table((), where)
        if isinstance(bars, list):
            return query.labelled(bars_table(((payload.get("symbol"), bars),), where))
        if isinstance(bars, dict):
            return query.labelled(bars_table(bars.items(), where))
        raise ResponseFormatError(f"{where}: 'bars' is a {type(bars).__name__}, not a map")
