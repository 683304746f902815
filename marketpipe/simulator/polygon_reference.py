"""Polygon.io / Massive reference data: which tickers exist, for whom, and since when.

- ``GET /v3/reference/tickers/{ticker}`` (``date=``): the ticker's details as of that day:
  ``active``, ``list_date``, the composite FIGI; ``404 {"status": "NOT_FOUND", ...}`` for a
  ticker nobody traded under then. Without ``date``, today's, or for a ticker nobody uses
  today its last user's (inactive, with ``delisted_utc``).
- ``GET /v3/reference/tickers`` (``ticker``, ``ticker.gt|gte|lt|lte``, ``date``, ``active``
  default true, ``market``, ``order``, ``limit`` default 100 up to 1000, ``sort=ticker``,
  ``cursor``): the tickers listed (or, with ``active=false``, delisted) on a day, paged by a
  ``next_url``.
- ``GET /vX/reference/tickers/{id}/events`` (id a ticker or a composite FIGI; ``types``):
  the security's ``ticker_change`` events, newest first.

Securities come from the simulator's :class:`SecurityBook`; every other well-formed ticker
exists (except the configured unknown symbols) from its configured listing date, else from
long before any range, and is never renamed. ``delisted_utc`` is midnight New York after the
last session, in UTC (the real field's exact instant is unconfirmed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from marketpipe.markettime.calendar import new_york_midnight
from marketpipe.simulator.massive_paging import decode_cursor, encode_cursor
from marketpipe.simulator.securities import (
    SecurityBook,
    SimulatedSecurity,
    figi_like,
    plain_ticker_exists,
)
from marketpipe.simulator.wire import BadRequest, parse_day

PATH_PREFIX = ("v3", "reference", "tickers")
NOT_FOUND_MESSAGE = "Ticker not found."
LISTED_SINCE = dt.date(1990, 1, 2)  # the listing date of tickers without a configured one
_LIST_PARAMS = {
    "ticker",
    "ticker.gt",
    "ticker.gte",
    "ticker.lt",
    "ticker.lte",
    "date",
    "active",
    "market",
    "order",
    "limit",
    "sort",
    "cursor",
    "apiKey",
}


def is_reference_path(parts: list[str]) -> bool:
    """Whether a request path asks for reference data (details, the list, or events)."""
    if tuple(parts[:3]) == PATH_PREFIX:
        return len(parts) in (3, 4)
    return len(parts) == 5 and parts[:3] == ["vX", "reference", "tickers"] and parts[4] == "events"


@dataclass(frozen=True)
class ReferenceData:
    """What the simulated vendor knows about tickers, answering the reference endpoints."""

    book: SecurityBook
    listings: dict[str, dt.date]
    unknown: frozenset[str]
    # The FIGIs of plain tickers it has handed out (a FIGI cannot be turned back into its
    # ticker otherwise): events by such a FIGI are those of its ticker.
    plain_figis: dict[str, str] = field(default_factory=dict)

    def answer(
        self, parts: list[str], query: list[tuple[str, str]], today: dt.date, request_id: str
    ) -> dict[str, Any]:
        """The body of one reference request, or a :class:`BadRequest`."""
        if parts[0] == "vX":
            results = self.events(parts[3], query, today)
        elif len(parts) == 3:
            return {**self.tickers(parts, query, today), "request_id": request_id}
        else:
            results = self.details(parts[3], query, today)
        return {"results": results, "status": "OK", "request_id": request_id}

    def details(self, ticker: str, query: list[tuple[str, str]], today: dt.date) -> dict[str, Any]:
        """``/v3/reference/tickers/{ticker}``: as of ``date``, or a 404 when nobody traded
        under it that day; without ``date``, today's holder or else its last one (then
        inactive, with ``delisted_utc``)."""
        params = dict(query)
        _refuse_unexpected(params, {"date", "apiKey"})
        asked = parse_day(params.get("date"), "date")
        on = asked or today
        if self.book.known(ticker):
            security = self.book.holder(ticker, on)
            if security is None and asked is None:
                security = self.book.last_holder(ticker, on)
            if security is None or security.ticker_on(on) != ticker:
                raise BadRequest(NOT_FOUND_MESSAGE, status=404)
            return _security_record(security, ticker, on, full=True)
        listed = self.listings.get(ticker, LISTED_SINCE)
        if on < listed or not plain_ticker_exists(ticker, self.unknown):
            raise BadRequest(NOT_FOUND_MESSAGE, status=404)
        return self._plain_record(ticker, listed, full=True)

    def tickers(
        self, parts: list[str], query: list[tuple[str, str]], today: dt.date
    ) -> dict[str, Any]:
        """``/v3/reference/tickers``: one page of the tickers listed (or delisted) on a day."""
        raw = dict(query)
        _refuse_unexpected(raw, _LIST_PARAMS)
        params = _with_cursor(raw)
        on = parse_day(params.get("date"), "date") or today
        active = params.get("active", "true").lower()
        if active not in ("true", "false"):
            raise BadRequest(f"invalid active: {params['active']} (true or false)")
        if params.get("sort", "ticker") != "ticker":
            raise BadRequest("the simulator sorts tickers by ticker only")
        order = params.get("order", "asc")
        if order not in ("asc", "desc"):
            raise BadRequest(f"invalid order: {order}")
        limit = _limit(params.get("limit"))
        if params.get("market", "stocks") != "stocks":
            rows: list[dict[str, Any]] = []
        else:
            rows = [
                row
                for row in self._records_on(on, params.get("ticker"))
                if row["active"] == (active == "true") and _ticker_matches(row["ticker"], params)
            ]
        rows.sort(key=lambda row: row["ticker"], reverse=order == "desc")
        offset = int(params.get("offset", "0"))
        page = rows[offset : offset + limit]
        body: dict[str, Any] = {"results": page, "status": "OK", "count": len(page)}
        if offset + limit < len(rows):
            carried = {k: v for k, v in params.items() if k not in ("cursor", "apiKey")}
            cursor = encode_cursor({**carried, "offset": str(offset + limit)})
            body["next_url"] = f"/{'/'.join(parts)}?{urlencode({'cursor': cursor})}"
        return body

    def events(
        self, identifier: str, query: list[tuple[str, str]], today: dt.date
    ) -> dict[str, Any]:
        """``/vX/reference/tickers/{id}/events``: a security's ticker changes, newest first."""
        params = dict(query)
        _refuse_unexpected(params, {"types", "apiKey"})
        types = {t.strip() for t in params.get("types", "ticker_change").split(",") if t.strip()}
        if not types <= {"ticker_change"}:
            raise BadRequest(f"invalid types: {params['types']} (ticker_change)")
        security = self.book.resolve(identifier, today)
        identifier = self.plain_figis.get(identifier, identifier)
        if security is not None:
            spans = [(span.ticker, span.start) for span in security.spans]
            name, figi = security.name, security.composite_figi
        elif (
            not self.book.known(identifier)
            and plain_ticker_exists(identifier, self.unknown)
            and not _figi_shaped(identifier)
        ):
            spans = [(identifier, self.listings.get(identifier, LISTED_SINCE))]
            name, figi = _plain_name(identifier), figi_like(identifier)
        else:
            raise BadRequest(NOT_FOUND_MESSAGE, status=404)
        events = [
            {"ticker_change": {"ticker": ticker}, "type": "ticker_change", "date": day.isoformat()}
            for ticker, day in reversed(spans)
        ]
        return {"name": name, "composite_figi": figi, "events": events}

    def _records_on(self, on: dt.date, ticker: str | None) -> list[dict[str, Any]]:
        """Every ticker's list record as of ``on``: book securities under the ticker they used
        then (a delisted one under its last), configured listings, and ``ticker`` if asked."""
        rows = []
        for security in self.book.securities:
            used = security.ticker_on(on)
            if used is not None:
                rows.append(_security_record(security, used, on, full=False))
        plain = {name for name in self.listings if not self.book.known(name)}
        if ticker and not self.book.known(ticker):
            plain.add(ticker)
        for name in sorted(plain):
            listed = self.listings.get(name, LISTED_SINCE)
            if listed <= on and plain_ticker_exists(name, self.unknown):
                rows.append(self._plain_record(name, listed, full=False))
        return rows

    def _plain_record(self, ticker: str, listed: dt.date, *, full: bool) -> dict[str, Any]:
        record = _plain_record(ticker, listed, full=full)
        self.plain_figis[record["composite_figi"]] = ticker
        return record


def _security_record(
    security: SimulatedSecurity, ticker: str, on: dt.date, *, full: bool
) -> dict[str, Any]:
    record = _base_record(ticker, security.name, security.composite_figi)
    record["active"] = security.trades_on(on)
    if security.delisted is not None and on > security.delisted:
        after = new_york_midnight(security.delisted + dt.timedelta(days=1))
        record["delisted_utc"] = after.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if full:
        record["list_date"] = security.listed.isoformat()
    return record


def _plain_record(ticker: str, listed: dt.date, *, full: bool) -> dict[str, Any]:
    record = {**_base_record(ticker, _plain_name(ticker), figi_like(ticker)), "active": True}
    if full:
        record["list_date"] = listed.isoformat()
    return record


def _figi_shaped(identifier: str) -> bool:
    return len(identifier) == 12 and identifier.startswith("BBG")


def _plain_name(ticker: str) -> str:
    return f"{ticker} Simulated Inc."


def _base_record(ticker: str, name: str, figi: str) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "name": name,
        "market": "stocks",
        "locale": "us",
        "primary_exchange": "XNAS",
        "type": "CS",
        "currency_name": "usd",
        "composite_figi": figi,
        "share_class_figi": figi_like(figi, "share_class"),
    }


def _refuse_unexpected(params: dict[str, str], allowed: set[str]) -> None:
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")


def _ticker_matches(ticker: str, params: dict[str, str]) -> bool:
    tests = {
        "ticker": ticker.__eq__,
        "ticker.gt": ticker.__gt__,
        "ticker.gte": ticker.__ge__,
        "ticker.lt": ticker.__lt__,
        "ticker.lte": ticker.__le__,
    }
    return all(test(params[name]) for name, test in tests.items() if name in params)


def _limit(text: str | None) -> int:
    try:
        limit = int(text or 100)
    except ValueError:
        raise BadRequest(f"invalid limit: {text}") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("limit must be between 1 and 1000")
    return limit


def _with_cursor(params: dict[str, str]) -> dict[str, str]:
    """The request's parameters with those its ``cursor`` carries (the page offset too)."""
    cursor = params.pop("cursor", None)
    if not cursor:
        return params
    carried = decode_cursor(cursor)
    try:
        int(carried.get("offset", "0"))
    except ValueError:
        raise BadRequest("invalid cursor") from None
    return {**carried, **{k: v for k, v in params.items() if k == "apiKey"}}
