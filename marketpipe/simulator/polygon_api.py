"""Polygon.io / Massive aggregates, answered from the same synthetic market as Alpaca's bars.

``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`` as the references
describe it: ``from``/``to`` as ``YYYY-MM-DD`` (New York days) or millisecond epochs, ``t`` in
milliseconds, ``v`` a float, ``limit`` counting base (minute) bars, pagination by a
``next_url`` that restarts ``from`` at the next bar and carries nothing but an opaque
``cursor`` (base64 of the request's parameters, never the API key; or, with
``polygon_cursor="limit_sort"``, of ``limit`` and ``sort`` only, as a captured one decodes,
so that a client re-sending it as given gets the default, adjusted bars). The ``results``
key is absent when there is nothing, and the vendor's error bodies
(``{"status": "ERROR", "error": ...}``). SIP bars only (Polygon's consolidated tape), the
extended session included; ``adjusted=true`` adjusts for splits, as Polygon's does. A ticker
is served as traded: on each day, the bars of the security that used it that day (none before a
rename to it, none after a delisting; another company's after a reuse).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from marketpipe.markettime.calendar import (
    Session,
    new_york_date,
    new_york_midnight,
    trading_sessions,
)
from marketpipe.markettime.finality import FREE_PLAN_SIP_DELAY
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator.actions import ActionBook
from marketpipe.simulator.market import Bar, SyntheticMarket, scaled
from marketpipe.simulator.massive_paging import decode_cursor, encode_cursor
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.wire import BadRequest

PATH_PREFIX = ("v2", "aggs", "ticker")
# The free (Basic) plan: about two years of history, 15-minute-delayed (reference section 1).
FREE_PLAN_HISTORY = dt.timedelta(days=2 * 365)
FREE_PLAN_HISTORY_MESSAGE = (
    "Your plan doesn't include this data timeframe. Please upgrade your plan at "
    "https://massive.com/pricing"
)
MAX_LIMIT = 50_000
DEFAULT_LIMIT = 5_000
_TIMESPANS = {"minute": "Min", "hour": "Hour", "day": "Day"}
_MINUTE = Timeframe.parse("1Min")
_PARAMS = {"adjusted", "sort", "limit", "cursor", "apiKey"}


def polygon_error(status: int, message: str, key: str = "error") -> tuple[int, dict[str, Any]]:
    """A Polygon error body: ``status`` word, a request id and the message."""
    word = {401: "ERROR", 403: "NOT_AUTHORIZED", 404: "NOT_FOUND"}.get(status, "ERROR")
    request_id = hashlib.sha256(message.encode()).hexdigest()[:32]
    return status, {"status": word, "request_id": request_id, key: message}


def is_polygon_path(parts: list[str]) -> bool:
    """Whether a request path is an aggregates request."""
    return len(parts) == 9 and tuple(parts[:3]) == PATH_PREFIX and parts[4] == "range"


class PolygonAggregates:
    """Pages of one ticker's aggregates between two bounds."""

    def __init__(
        self,
        market: SyntheticMarket,
        actions: ActionBook,
        now: Callable[[], dt.datetime],
        cursor_carries: str = "request",
        book: SecurityBook | None = None,
    ) -> None:
        self.market = market
        self.actions = actions
        self.now = now
        self.cursor_carries = cursor_carries
        self.book = book or SecurityBook()

    def page(
        self, parts: list[str], query: list[tuple[str, str]], plan: str = "paid"
    ) -> tuple[dict[str, Any], int]:
        """The answer to one aggregates request and how many bars it holds; the ``free`` plan
        reaches two years back and withholds the last 15 minutes (``status: DELAYED``)."""
        ticker, multiplier, timespan, start_text, end_text = (
            parts[3],
            parts[5],
            parts[6],
            parts[7],
            parts[8],
        )
        params = _with_cursor(dict(query))
        unexpected = sorted(set(params) - _PARAMS)
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        if timespan not in _TIMESPANS or not multiplier.isdigit() or int(multiplier) < 1:
            raise BadRequest(f"invalid range: {multiplier}/{timespan}")
        timeframe = Timeframe.parse(f"{multiplier}{_TIMESPANS[timespan]}")
        start_ms = _bound(start_text, "from", end=False)
        end_ms = _bound(end_text, "to", end=True)
        limit = _limit(params.get("limit"))
        adjusted = params.get("adjusted", "true").lower() != "false"
        if params.get("sort", "asc") != "asc":
            raise BadRequest("sort=desc is not supported by the simulator")
        now = self.now()
        free = plan == "free"
        if free and start_ms < int((now - FREE_PLAN_HISTORY).timestamp() * 1000):
            raise BadRequest(FREE_PLAN_HISTORY_MESSAGE, status=403)
        if free:
            now -= FREE_PLAN_SIP_DELAY
        end_ms = min(end_ms, int(now.timestamp() * 1000))
        bars: list[Bar] = []
        base_count = 0
        # ``limit`` counts base aggregates (minutes, or days for day bars), not returned bars.
        seconds = timeframe.seconds
        per_bar = timeframe.amount if seconds is None or seconds >= 86_400 else seconds // 60
        first_day = new_york_date(dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC))
        last_day = new_york_date(dt.datetime.fromtimestamp(max(end_ms, start_ms) / 1000, dt.UTC))
        more_at: int | None = None
        for session in trading_sessions(first_day, last_day):
            for bar in self._session(ticker, session, timeframe, adjusted, now):
                if not start_ms <= bar.t * 1000 <= end_ms:
                    continue
                if base_count + per_bar > limit and bars:
                    more_at = bar.t * 1000
                    break
                bars.append(bar)
                base_count += per_bar
            if more_at is not None:
                break
        payload: dict[str, Any] = {
            "ticker": ticker,
            "queryCount": len(bars),
            "resultsCount": len(bars),
            "adjusted": adjusted,
        }
        if bars:
            payload["results"] = [_result(bar) for bar in bars]
        payload |= {
            "status": "DELAYED" if free else "OK",
            "request_id": _request_id(parts, query),
            "count": len(bars),
        }
        if more_at is not None:
            carried = {k: v for k, v in params.items() if k not in ("cursor", "apiKey")}
            if self.cursor_carries == "limit_sort":
                carried = {"limit": str(limit), "sort": "asc"}
            cursor = encode_cursor(carried)
            path = "/".join(["", *parts[:7], str(more_at), end_text])
            payload["next_url"] = f"{path}?{urlencode({'cursor': cursor})}"
        return payload, len(bars)

    def minute_bars(self, ticker: str, session: Session, now: dt.datetime) -> list[Bar]:
        """``ticker``'s raw one-minute bars of ``session`` as traded, as known at ``now``."""
        return self._session(ticker, session, _MINUTE, False, now)

    def _session(
        self, ticker: str, session: Session, timeframe: Timeframe, adjusted: bool, now: dt.datetime
    ) -> list[Bar]:
        series = self.book.as_traded(ticker, session.date)
        if series is None:
            return []
        ticker = series
        try:
            bars = self.market.bars(ticker, session, "sip", timeframe, now.timestamp())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if not adjusted:
            return bars
        price, volume = self.actions.adjustment_factors(
            ticker, session.date, frozenset({"split"}), new_york_date(now), lambda *_: None
        )
        return scaled(bars, price, volume)


def _with_cursor(params: dict[str, str]) -> dict[str, str]:
    """The request's parameters, with those its ``cursor`` carries unless given again."""
    cursor = params.get("cursor")
    if not cursor:
        return params
    carried = decode_cursor(cursor)
    return {**{k: v for k, v in carried.items() if k in _PARAMS - {"cursor", "apiKey"}}, **params}


def _bound(text: str, name: str, *, end: bool) -> int:
    """A ``from``/``to`` path segment as epoch milliseconds (a date: its New York day)."""
    if text.isdigit():
        return int(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"Could not parse the '{name}' parameter: {text!r}") from None
    midnight = new_york_midnight(day + dt.timedelta(days=1) if end else day)
    return int(midnight.timestamp() * 1000) - (1 if end else 0)


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise BadRequest("invalid limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def _result(bar: Bar) -> dict[str, Any]:
    return {
        "v": float(bar.v),
        "vw": bar.vw,
        "o": bar.o,
        "c": bar.c,
        "h": bar.h,
        "l": bar.l,
        "t": bar.t * 1000,
        "n": bar.n,
    }


def _request_id(parts: list[str], query: list[tuple[str, str]]) -> str:
    return hashlib.sha256(f"{parts}{sorted(query)}".encode()).hexdigest()[:32]
