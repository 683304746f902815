"""Polygon.io / Massive aggregates (``GET /v2/aggs/ticker/.../range/...``) on the shared base.

One ticker per request (the vendor's API has no multi-symbol bars), so a query's symbols are
streamed one after another, in order; each stream follows ``next_url`` (its path and query,
re-requested against the configured base with the key in the ``Authorization`` header: the
vendor leaves the key out of it) until it is absent. A ``next_url`` carries only an opaque
cursor, so ``adjusted=false``, ``sort`` and ``limit`` are sent again with every page (without
them a later page would come back adjusted, the default), and a page that says it is adjusted
or whose ``resultsCount`` disagrees with its ``results`` is refused. ``t`` is a millisecond
epoch, ``v`` may be a float, ``vw`` and ``n`` may be missing, and an absent ``results`` key is
an empty page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from marketpipe.connectors.alpaca import BarsQuery
from marketpipe.connectors.auth import AuthStrategy, BearerTokenAuth
from marketpipe.connectors.base_api_client import BaseApiClient, Page, QueryT
from marketpipe.connectors.config import ClientConfig, NonEmptySecret, with_environment_defaults
from marketpipe.connectors.errors import (
    ApiError,
    ConnectorError,
    ResponseFormatError,
    SubscriptionError,
)
from marketpipe.connectors.models import OHLCV, OHLCV_SCHEMA
from marketpipe.connectors.transport import RequestSpec
from marketpipe.markettime.calendar import new_york_midnight
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit

_TIMESPANS = {
    TimeframeUnit.MINUTE: "minute",
    TimeframeUnit.HOUR: "hour",
    TimeframeUnit.DAY: "day",
}
_FIELDS = ("o", "h", "l", "c", "v")
_INSTANT = dt.timedelta(milliseconds=1)


class PolygonConfig(ClientConfig):
    """Massive (Polygon.io) settings; the key and URL fall back to the environment."""

    DEFAULT_BASE_URL: ClassVar[str] = "https://api.massive.com"
    ENV_API_KEY: ClassVar[str] = "POLYGON_API_KEY"
    ENV_ALTERNATE_API_KEY: ClassVar[str] = "MASSIVE_API_KEY"
    ENV_BASE_URL: ClassVar[str] = "POLYGON_API_URL"

    base_url: str = Field(DEFAULT_BASE_URL, description="Massive / Polygon API root")
    api_key: NonEmptySecret = Field(description="API key (env POLYGON_API_KEY or MASSIVE_API_KEY)")
    page_size: int = Field(50_000, ge=1, le=50_000, description="Base bars per page (limit)")
    requests_per_minute: int = Field(
        5, ge=1, le=100_000, description="Request budget per minute (the free tier's 5)"
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any) -> Any:
        sources = {
            "base_url": (cls.ENV_BASE_URL,),
            "api_key": (cls.ENV_API_KEY, cls.ENV_ALTERNATE_API_KEY),
        }
        return with_environment_defaults(data, sources, required=("api_key",))


class PolygonApiClient(BaseApiClient[QueryT]):
    """What every Massive (Polygon.io) endpoint shares: the key as a bearer token, a 403
    that is the plan's limit, one ticker per request stream, ``next_url`` paging and the
    ``{"status": "OK", "results": [...]}`` page."""

    vendor: ClassVar[str] = "polygon"
    credential_variables: ClassVar[tuple[str, ...]] = (
        PolygonConfig.ENV_API_KEY,
        PolygonConfig.ENV_ALTERNATE_API_KEY,
    )

    def default_auth(self, config: ClientConfig) -> AuthStrategy:
        """``Authorization: Bearer <key>``, as the official client sends it."""
        if not isinstance(config, PolygonConfig):
            raise TypeError(f"{type(self).__name__} needs a PolygonConfig (or an explicit auth=)")
        return BearerTokenAuth(config.api_key)

    def explain(self, error: ApiError) -> ConnectorError:
        """A 403 is the plan (history depth, delay); a 401 the key (see the base)."""
        if error.status == 403:
            return SubscriptionError(
                403,
                f"{error.message}: this Massive/Polygon plan does not cover the data asked for "
                "(history depth or recency); not retried",
                error.endpoint,
            )
        return super().explain(error)

    def next_path(self, page: Page, prefix: str, what: str) -> str | None:
        """``next_url``'s path and query, to re-request against our own base (the vendor
        leaves the key out of it); ``None`` at the end."""
        payload = page.payload
        next_url = payload.get("next_url") if isinstance(payload, dict) else None
        if not next_url:
            return None
        parts = urlsplit(str(next_url))
        if not parts.path.startswith(prefix):
            raise ResponseFormatError(f"{what} page {page.number}: next_url leads elsewhere")
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    def streams(self, query: QueryT) -> list[QueryT]:
        """The queries of one request stream each: Massive's endpoints take one ticker, so
        one per symbol (a query without symbols: itself)."""
        symbols = getattr(query, "symbols", ())
        if not symbols:
            return [query]
        model = cast(BaseModel, query)
        return [cast(QueryT, model.model_copy(update={"symbols": (s,)})) for s in symbols]

    def paginate(self, query: QueryT) -> Iterator[Page]:
        """Each stream's pages in turn (see :meth:`streams`)."""
        for part in self.streams(query):
            yield from super().paginate(part)

    async def apaginate(self, query: QueryT) -> AsyncIterator[Page]:
        """Async twin of :meth:`paginate`."""
        for part in self.streams(query):
            async for page in super().apaginate(part):
                yield page

    def continued(self, cursor: str, endpoint: str) -> RequestSpec:
        """The request a ``next_url`` cursor names, as it is (it carries the whole query)."""
        path, _, text = cursor.partition("?")
        return RequestSpec(path=path, params=tuple(parse_qsl(text)), endpoint=endpoint)

    def page_results(self, page: Page, what: str) -> tuple[dict[str, Any], list[Any]]:
        """A page's payload and its ``results`` (absent: none), once it is an OK answer."""
        where = f"{what} page {page.number}"
        payload = page.payload
        if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED"):
            raise ResponseFormatError(f"{where}: expected a JSON object with status OK")
        results = payload.get("results") or []
        if not isinstance(results, list):
            raise ResponseFormatError(f"{where}: 'results' is not a list")
        return payload, results


class PolygonClient(PolygonApiClient[BarsQuery]):
    """Massive (Polygon.io) aggregates as canonical OHLCV tables, raw (``adjusted=false``)."""

    dataset = OHLCV

    def ticker_details(self, symbol: str, on: dt.date | None = None) -> dict[str, Any] | None:
        """``GET /v3/reference/tickers/{symbol}``'s ``results`` as of ``on`` (default: today;
        ``None``: nobody used the ticker then), asked once per client."""
        cache: dict[tuple[str, dt.date | None], dict[str, Any] | None] = self.__dict__.setdefault(
            "_details", {}
        )
        if (symbol, on) not in cache:
            params = () if on is None else (("date", on.isoformat()),)
            path = f"/v3/reference/tickers/{symbol}"
            payload = self._reference(RequestSpec(path=path, params=params, endpoint="reference"))
            cache[symbol, on] = _results(payload, dict, f"ticker details of {symbol}")
        return cache[symbol, on]

    def delisted_listings(self, symbol: str) -> list[dict[str, Any]]:
        """Every delisted security that traded as ``symbol`` (``GET /v3/reference/tickers``
        with ``active=false``), following ``next_url``."""
        spec = RequestSpec(
            path="/v3/reference/tickers",
            params=(("ticker", symbol), ("active", "false"), ("limit", "1000")),
            endpoint="reference",
        )
        listings: list[dict[str, Any]] = []
        while True:
            payload = self._reference(spec)
            listings += _results(payload, list, f"delisted tickers {symbol}") or []
            next_url = payload.get("next_url") if isinstance(payload, dict) else None
            if not next_url:
                return listings
            parts = urlsplit(str(next_url))
            spec = RequestSpec(
                path=parts.path, params=tuple(parse_qsl(parts.query)), endpoint="reference"
            )

    def ticker_events(self, identifier: str) -> dict[str, Any] | None:
        """``GET /vX/reference/tickers/{identifier}/events``'s ``results`` (``identifier`` a
        ticker or a composite FIGI): the security's name, FIGI and ``ticker_change`` events;
        ``None`` when the vendor does not know it."""
        spec = RequestSpec(
            path=f"/vX/reference/tickers/{identifier}/events",
            params=(("types", "ticker_change"),),
            endpoint="reference",
        )
        return _results(self._reference(spec), dict, f"ticker events of {identifier}")

    def _reference(self, spec: RequestSpec) -> Any:
        """A reference request's payload, ``None`` for a 404."""
        try:
            return self.send(spec).payload
        except ApiError as error:
            if error.status != 404:
                raise
            return None

    def unknown_symbols(self, symbols: tuple[str, ...], query: BarsQuery) -> set[str]:
        """Tickers the vendor's reference data does not know (a 404 from ticker details)."""
        return {symbol for symbol in symbols if self.ticker_details(symbol) is None}

    def expects_bars(self, symbol: str, day: dt.date) -> bool:
        """Whether ``symbol`` was listed on ``day`` (after its ``list_date``, before any
        ``delisted_utc``), so that a day without a single bar is suspect, not empty."""
        details = self.ticker_details(symbol)
        if details is None:
            return False
        try:
            listed = dt.date.fromisoformat(str(details.get("list_date") or "0001-01-01"))
            delisted_text = details.get("delisted_utc")
            delisted = (
                dt.datetime.fromisoformat(str(delisted_text)).date() if delisted_text else None
            )
        except ValueError:
            return False
        return listed <= day and (delisted is None or day < delisted)

    def streams(self, query: BarsQuery) -> list[BarsQuery]:
        """Each symbol in turn (one ticker per request; a renamed security's under each
        ticker it traded as, for those days)."""
        return list(_as_traded(query))

    def build_request(self, query: BarsQuery, cursor: str | None) -> RequestSpec:
        """The first request of the query's (one) symbol, or the page ``cursor`` names."""
        fixed = (("adjusted", "false"), ("sort", "asc"), ("limit", str(self.config.page_size)))
        if cursor is not None:
            path, _, text = cursor.partition("?")
            names = {name for name, _ in fixed}
            carried = tuple((k, v) for k, v in parse_qsl(text) if k not in names)
            return RequestSpec(path=path, params=(*fixed, *carried), endpoint="aggs")
        (symbol,) = query.symbols
        timeframe = Timeframe.parse(query.timeframe)
        if timeframe.unit not in _TIMESPANS:
            raise ValueError(f"timeframe {query.timeframe} has no Polygon timespan")
        start_ms = int(query.start.timestamp() * 1000)
        end_ms = int(query.end.timestamp() * 1000)
        path = (
            f"/v2/aggs/ticker/{symbol}/range/{timeframe.amount}/{_TIMESPANS[timeframe.unit]}"
            f"/{start_ms}/{end_ms}"
        )
        return RequestSpec(path=path, params=fixed, endpoint="aggs")

    def next_cursor(self, page: Page) -> str | None:
        """``next_url``'s path and query (resolved against our own base); ``None`` at the end."""
        return self.next_path(page, "/v2/aggs/ticker/", "aggs")

    def parse_page(self, page: Page, query: BarsQuery) -> pa.Table:
        """The page's ``results`` as a canonical table (absent ``results``: no bars)."""
        where = f"aggs page {page.number}"
        payload, rows = self.page_results(page, "aggs")
        symbol = str(payload.get("ticker") or page.request.path.split("/")[4])
        if payload.get("adjusted") is True:
            raise ResponseFormatError(f"{where}: the bars came back adjusted; raw was asked for")
        count = payload.get("resultsCount")
        if isinstance(count, int) and count != len(rows):
            raise ResponseFormatError(
                f"{where}: resultsCount says {count} bars but the page holds {len(rows)}"
            )
        try:
            columns = {name: [row[name] for row in rows] for name in ("t", *_FIELDS)}
            trades = [row.get("n") for row in rows]
            vwaps = [row.get("vw") for row in rows]
            stamps = pa.array(columns["t"], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
            arrays = [
                pa.array([symbol] * len(rows), pa.string()),
                stamps.cast(OHLCV_SCHEMA.field("timestamp").type),
                *(pa.array(columns[name], pa.float64()) for name in _FIELDS),
                pa.array(trades, pa.int64()),
                pa.array(vwaps, pa.float64()),
            ]
        except KeyError as exc:
            raise ResponseFormatError(f"{where}: a bar lacks field {exc}") from None
        except (TypeError, AttributeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ResponseFormatError(f"{where}: a bar is malformed: {exc}") from None
        return query.labelled(pa.Table.from_arrays(arrays, schema=OHLCV_SCHEMA))


def _as_traded(query: BarsQuery) -> Iterator[BarsQuery]:
    """One query per ticker to request: each symbol in turn, or for a symbol that traded
    under other tickers, each of them over the days it was used (none outside them)."""
    if not query.traded_as:
        for symbol in query.symbols:
            yield query.model_copy(update={"symbols": (symbol,)})
        return
    for span in query.traded_as:
        start, end = query.start, query.end
        if span.first is not None:
            start = max(start, new_york_midnight(span.first))
        if span.last is not None:
            end = min(end, new_york_midnight(span.last + dt.timedelta(days=1)) - _INSTANT)
        if start <= end:
            yield query.model_copy(
                update={"symbols": (span.ticker,), "traded_as": (), "start": start, "end": end}
            )


def _results(payload: Any, kind: type, what: str) -> Any:
    """A reference payload's ``results`` of the expected ``kind`` (``None`` for no payload)."""
    if payload is None:
        return None
    results = payload.get("results") if isinstance(payload, dict) else None
    if results is None and kind is list and isinstance(payload, dict):
        return []  # like aggregates, an empty list may leave the key out
    if not isinstance(results, kind):
        raise ResponseFormatError(f"{what}: no 'results' {kind.__name__}")
    return results
