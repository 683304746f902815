"""The simulated bars API's wire: query parsing and validation, page tokens, JSON encoding."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from marketpipe.markettime.calendar import new_york_date, new_york_midnight
from marketpipe.markettime.finality import FREE_PLAN_SIP_DELAY
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.markettime.timeutil import parse_rfc3339
from marketpipe.simulator.actions import adjustment_kinds

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
GZIP_MIN_BYTES = 256
# Encoded sessions kept in memory (about 100 kB each for a liquid symbol's 1-minute bars).
ENCODED_SESSIONS_KEPT = 2048
FEEDS = ("sip", "iex", "boats", "otc")
# Latest endpoints also serve SIP delayed by 15 minutes, to every plan.
LATEST_FEEDS = (*FEEDS, "delayed_sip")
# Alpaca's answer when the free plan asks for SIP data of the last 15 minutes (Market Data FAQ).
RECENT_SIP_CODE = 42210000
RECENT_SIP_MESSAGE = "subscription does not permit querying recent SIP data"
_COMMON_PARAMS = {"timeframe", "start", "end", "limit", "page_token", "feed", "adjustment", "asof"}
_IGNORED_PARAMS = {"sort", "currency"}


class BadRequest(Exception):
    """A client error to answer with ``{"message": ...}`` (and Alpaca's ``code`` if any)."""

    def __init__(self, message: str, status: int = 400, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def recent_sip_refused() -> BadRequest:
    """The free plan's refusal of SIP data of the last 15 minutes."""
    return BadRequest(RECENT_SIP_MESSAGE, 403, RECENT_SIP_CODE)


@dataclass(frozen=True)
class BarsRequest:
    """A validated bars query."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    start: dt.datetime
    end: dt.datetime
    limit: int
    feed: str
    digest: str
    as_of: float
    adjustment: frozenset[str] = frozenset()  # price effects asked for: split, dividend
    # The day whose symbol map names the security (Alpaca's default: today); None: asof=-,
    # every ticker as traded.
    asof: dt.date | None = None


_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?$")
_ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})


def check_ticker(symbol: str) -> None:
    """Refuse what Alpaca answers ``invalid symbol`` to (the simulator keeps its own rules)."""
    if not _TICKER.match(symbol):
        raise ValueError(symbol)


def check_adjustment(value: str) -> str:
    """One of Alpaca's adjustments or a comma-separated combination, normalised."""
    parts = [part.strip() for part in value.split(",")]
    if not parts or any(part not in _ADJUSTMENTS for part in parts):
        raise ValueError(value)
    return ",".join(parts)


def json_bytes(payload: Any) -> bytes:
    """``payload`` as compact JSON."""
    return orjson.dumps(payload)


def json_list(encoded: list[bytes]) -> orjson.Fragment:
    """A JSON array of already encoded items, embedded as is by ``orjson.dumps``."""
    return orjson.Fragment(b"[" + b",".join(encoded) + b"]")


def parse_bars_request(
    query: list[tuple[str, str]], single_symbol: str | None, now: dt.datetime, plan: str
) -> BarsRequest:
    """Validate a bars query as Alpaca does, at market time ``now`` for the keys' ``plan``."""
    params: dict[str, str] = {}
    for name, value in query:
        params[name] = value
    allowed = _COMMON_PARAMS | _IGNORED_PARAMS | (set() if single_symbol else {"symbols"})
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    symbols = requested_symbols(params, single_symbol)
    if "timeframe" not in params:
        raise BadRequest("timeframe is required")
    try:
        timeframe = Timeframe.parse(params["timeframe"])
    except ValueError:
        raise BadRequest("invalid timeframe", 422) from None
    feed, start, end = requested_window(params, now, plan)
    limit = requested_limit(params)
    try:
        adjustment = check_adjustment(params.get("adjustment", "raw"))
    except ValueError:
        raise BadRequest(f"invalid adjustment: {params['adjustment']}") from None
    check_sort(params)
    asof = parse_asof(params.get("asof"), new_york_date(now))
    identity = "|".join(
        f"{name}={params.get(name, '')}"
        for name in ("symbols", "timeframe", "start", "end", "feed", "adjustment", "asof")
    )
    return BarsRequest(
        symbols=tuple(sorted(set(symbols))),
        timeframe=timeframe,
        start=start,
        end=min(end, now),
        limit=limit,
        feed=feed,
        digest=hashlib.sha256(f"{single_symbol}|{identity}".encode()).hexdigest()[:10],
        as_of=now.timestamp(),
        adjustment=adjustment_kinds(adjustment),
        asof=asof,
    )


def requested_symbols(params: dict[str, str], single_symbol: str | None) -> list[str]:
    """The symbols a market-data query names (the path's, or ``symbols``), each checked."""
    raw_symbols = [single_symbol] if single_symbol else params.get("symbols", "").split(",")
    symbols = [symbol.strip() for symbol in raw_symbols if symbol and symbol.strip()]
    if not symbols:
        raise BadRequest("symbols is required")
    for symbol in symbols:
        try:
            check_ticker(symbol)
        except ValueError:
            raise BadRequest(f"invalid symbol: {symbol}") from None
    return symbols


def requested_window(
    params: dict[str, str], now: dt.datetime, plan: str
) -> tuple[str, dt.datetime, dt.datetime]:
    """A market-data query's feed, start and end, with the plan's defaults and refusals."""
    free = plan == "free"
    delayed = now - FREE_PLAN_SIP_DELAY
    # The free plan's defaults: `end` is 15 minutes ago unless the feed is real-time for
    # it (IEX), and a missing feed means SIP when `end` is old enough, else silently IEX.
    explicit_end = parse_time(params.get("end"), "end")
    feed = params.get("feed") or ("sip" if not free or (explicit_end or now) <= delayed else "iex")
    if feed not in FEEDS:
        raise BadRequest(f"invalid feed: {feed}")
    end = explicit_end or (delayed if free and feed == "sip" else now)
    start = parse_time(params.get("start"), "start") or min(start_of_new_york_day(now), delayed)
    if end < start:
        raise BadRequest("end should not be before start")
    if free and feed == "sip" and end > delayed:
        raise recent_sip_refused()
    return feed, start, end


def requested_limit(params: dict[str, str]) -> int:
    """A query's page size: ``limit`` (default 1,000), 1 to 10,000."""
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise BadRequest("invalid limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"invalid limit: must be between 1 and {MAX_LIMIT}")
    return limit


def check_sort(params: dict[str, str]) -> None:
    """Refuse a bad ``sort``; ``desc`` is valid at Alpaca but not served here."""
    if params.get("sort", "asc") not in ("asc", "desc"):
        raise BadRequest(f"invalid sort: {params['sort']}")
    if params.get("sort") == "desc":
        raise BadRequest("sort=desc is not supported by the simulator", 422)


def parse_asof(value: str | None, today: dt.date) -> dt.date | None:
    """Alpaca's ``asof``: a ``YYYY-MM-DD`` day (default: ``today``), or ``-`` for no mapping."""
    if value is None or value == "":
        return today
    if value == "-":
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"invalid asof: {value}") from None


def json_numbers(values: list[float]) -> list[bytes]:
    """Encode floats for JSON the way Alpaca does: ``187`` for whole numbers, ``NaN`` for NaN."""
    array = np.asarray(values, dtype=np.float64)
    encoded = orjson.dumps(values).strip(b"[]").split(b",")
    with np.errstate(invalid="ignore"):
        whole = np.flatnonzero(np.floor(array) == array).tolist()
    for index in whole:
        encoded[index] = b"%d" % int(array[index])
    for index in np.flatnonzero(np.isnan(array)).tolist():
        encoded[index] = b"NaN"
    return encoded


def symbols_hint(query: list[tuple[str, str]]) -> tuple[str, ...]:
    """The symbols a query names (for symbol-targeted faults)."""
    return tuple(
        symbol.strip() for name, value in query if name == "symbols" for symbol in value.split(",")
    )


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An RFC-3339 instant or a ``YYYY-MM-DD`` New York day, or a 400 naming the parameter."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return new_york_midnight(day)
        return parse_rfc3339(value, name)
    except ValueError:
        raise BadRequest(f"invalid {name}") from None


def parse_day(value: str | None, name: str) -> dt.date | None:
    """A ``YYYY-MM-DD`` query value, or a 400 naming the parameter."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"invalid {name}: use YYYY-MM-DD") from None


def start_of_new_york_day(now: dt.datetime) -> dt.datetime:
    """Midnight in New York of the day ``now`` falls on."""
    return new_york_midnight(new_york_date(now))


def encode_token(position: tuple[str, dt.date, int], request: BarsRequest) -> str:
    """The opaque ``next_page_token`` that resumes ``request`` at ``position``."""
    symbol, day, index = position
    text = f"{symbol}|{request.timeframe}|{day.isoformat()}|{index}|{request.digest}"
    return base64.b64encode(text.encode()).decode()


def decode_token(token: str, request: BarsRequest) -> tuple[str, dt.date, int]:
    """Where a ``page_token`` of ``request`` resumes, or a 400 for a foreign or broken one."""
    try:
        symbol, _timeframe, day, index, digest = (
            base64.b64decode(token, validate=True).decode().split("|")
        )
        position = (symbol, dt.date.fromisoformat(day), int(index))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page_token") from None
    if digest != request.digest or symbol not in request.symbols or position[2] < 0:
        raise BadRequest("invalid page_token: it belongs to a different query")
    return position
