"""Alpaca Market Data v2 bars, answered from the synthetic market: the wire format exactly.

This module is HTTP-free: :meth:`SimulatorApp.handle` turns a request (path, query,
headers) into a :class:`Reply`; ``server.py`` puts it on the wire.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import datetime as dt
import gzip
import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson

from marketpipe import clock as market_clock
from marketpipe.calendar import (
    Session,
    new_york_date,
    new_york_midnight,
    trading_sessions,
)
from marketpipe.connectors.alpaca import check_adjustment
from marketpipe.connectors.models import check_symbol
from marketpipe.finality import FREE_PLAN_SIP_DELAY
from marketpipe.simulator.actions import (
    DEMO_CORPORATE_ACTIONS,
    ActionBook,
    adjustment_kinds,
)
from marketpipe.simulator.faults import STATUS_FAULTS, FaultConfig, FaultInjector
from marketpipe.simulator.market import (
    DEFAULT_OUTSIDE_RANGE_RATE,
    Bar,
    SyntheticMarket,
    daily_recalculation,
)
from marketpipe.simulator.request_log import RequestLog
from marketpipe.timeframe import Timeframe, TimeframeUnit
from marketpipe.timeutil import parse_rfc3339

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
GZIP_MIN_BYTES = 256
# Encoded sessions kept in memory (about 100 kB each for a liquid symbol's 1-minute bars).
ENCODED_SESSIONS_KEPT = 2048
_FEEDS = ("sip", "iex", "boats", "otc")
# Latest endpoints also serve SIP delayed by 15 minutes, to every plan.
_LATEST_FEEDS = (*_FEEDS, "delayed_sip")
# Alpaca's answer when the free plan asks for SIP data of the last 15 minutes (Market Data FAQ).
RECENT_SIP_CODE = 42210000
RECENT_SIP_MESSAGE = "subscription does not permit querying recent SIP data"
_COMMON_PARAMS = {"timeframe", "start", "end", "limit", "page_token", "feed", "adjustment"}
_IGNORED_PARAMS = {"sort", "asof", "currency"}


class BadRequest(Exception):
    """A client error to answer with ``{"message": ...}`` (and Alpaca's ``code`` if any)."""

    def __init__(self, message: str, status: int = 400, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _recent_sip_refused() -> BadRequest:
    return BadRequest(RECENT_SIP_MESSAGE, 403, RECENT_SIP_CODE)


@dataclass
class SimulatorConfig:
    """How the simulator behaves: data seed, credentials, rate limit, faults, wire quirks.

    ``plan`` is the subscription the keys have: ``free`` (Alpaca's Basic plan) refuses SIP
    data of the last 15 minutes, as the real API does; ``paid`` serves it.
    """

    seed: int = 0
    key_id: str | None = None
    secret_key: str | None = None
    rate_limit_per_minute: int = 200
    rate_limit_window_seconds: float = 60.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    bad_bars: dict[str, float] = field(default_factory=dict)
    listings: dict[str, dt.date] = field(default_factory=dict)
    unknown_symbols: frozenset[str] = frozenset()
    outside_range_rate: float = DEFAULT_OUTSIDE_RANGE_RATE
    corrections: frozenset[tuple[str, dt.date]] = frozenset()
    # Served by /v1/corporate-actions, and applied to the bars (see simulator.actions):
    # (group such as "forward_splits", record) pairs. The demo market's by default.
    corporate_actions: tuple[tuple[str, dict[str, Any]], ...] = DEMO_CORPORATE_ACTIONS
    plan: Literal["paid", "free"] = "paid"
    fractional_timestamps: bool = False
    gzip_level: int = 1

    @property
    def strict_keys(self) -> bool:
        """True when only the configured key pair is accepted."""
        return self.key_id is not None or self.secret_key is not None


@dataclass
class Reply:
    """What to send back; ``wire_fault`` asks the server to misbehave on the socket."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    wire_fault: str | None = None


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


class PerKeyRateLimit:
    """Alpaca-style per-key request budget over fixed windows (one minute by default)."""

    def __init__(
        self, per_minute: int, clock: Callable[[], float], window_seconds: float = 60.0
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.window = window_seconds
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def spend(self, key: str) -> tuple[bool, dict[str, str]]:
        """Count one request for ``key``; return whether it is allowed, and the headers."""
        if self.per_minute <= 0:
            return True, {}
        with self._lock:
            now = self.clock()
            window_start, used = self._windows.get(key, (now, 0))
            if now >= window_start + self.window:
                window_start, used = now, 0
            allowed = used < self.per_minute
            used += allowed
            self._windows[key] = (window_start, used)
        return allowed, {
            "X-RateLimit-Limit": str(self.per_minute),
            "X-RateLimit-Remaining": str(self.per_minute - used),
            "X-RateLimit-Reset": str(math.ceil(window_start + self.window)),
        }


def _json(payload: Any) -> bytes:
    return orjson.dumps(payload)


def _json_list(encoded: list[bytes]) -> orjson.Fragment:
    """A JSON array of already encoded items, embedded as is by ``orjson.dumps``."""
    return orjson.Fragment(b"[" + b",".join(encoded) + b"]")


class SimulatorApp:
    """Routes and answers requests for both bars endpoints."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        market_clock: Callable[[], dt.datetime] = market_clock.now,
        request_log: RequestLog | None = None,
    ) -> None:
        """``clock`` paces rate-limit windows; ``market_clock`` says what time the market is at
        (by default :func:`marketpipe.clock.now`, which tests pin with ``MARKETPIPE_NOW``)."""
        if config is not None and config.plan not in ("paid", "free"):
            raise ValueError(f"plan must be 'paid' or 'free', got {config.plan!r}")
        self.config = config or SimulatorConfig()
        self.clock = clock
        self.market_clock = market_clock
        self.actions = ActionBook(self.config.corporate_actions, strict=False)
        self.market = SyntheticMarket(
            self.config.seed, self.config.bad_bars, self.config.listings,
            self.config.unknown_symbols, self.config.outside_range_rate, self.config.corrections,
            self.actions,
        )  # fmt: skip
        self.faults = FaultInjector(self.config.faults)
        self.rate_limit = PerKeyRateLimit(
            self.config.rate_limit_per_minute, clock, self.config.rate_limit_window_seconds
        )
        self.log = request_log or RequestLog()
        self._encoded: collections.OrderedDict[
            tuple[str, dt.date, str, str], tuple[list[int], list[bytes]]
        ] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def handle(self, path: str, query: list[tuple[str, str]], headers: Mapping[str, str]) -> Reply:
        """Answer one GET request and record it in the request log."""
        received_at = time.time()
        started = time.perf_counter()
        reply, info = self._route(path, query, headers)
        if (
            reply.status == 200
            and "gzip" in headers.get("Accept-Encoding", "")
            and len(reply.body) > GZIP_MIN_BYTES
        ):
            reply.body = gzip.compress(reply.body, compresslevel=self.config.gzip_level, mtime=0)
            reply.headers["Content-Encoding"] = "gzip"
        self.log.record(
            path=path,
            params={name: value for name, value in query},
            status=reply.status,
            fault=info.get("fault"),
            bars=info.get("bars", 0),
            body_bytes=len(reply.body),
            key=info.get("key"),
            duration_ms=(time.perf_counter() - started) * 1000,
            received_at=received_at,
        )
        return reply

    def _route(
        self, path: str, query: list[tuple[str, str]], headers: Mapping[str, str]
    ) -> tuple[Reply, dict[str, Any]]:
        info: dict[str, Any] = {}
        parts = path.strip("/").split("/")
        latest = parts == ["v2", "stocks", "bars", "latest"]
        actions = parts == ["v1", "corporate-actions"]
        if latest or actions or parts == ["v2", "stocks", "bars"]:
            single_symbol = None
        elif len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "bars":
            single_symbol = parts[2]
        else:
            return self._error(404, "endpoint not found"), info
        key, auth_error = self._authenticate(headers)
        info["key"] = key
        if auth_error is not None:
            return auth_error, info
        allowed, limit_headers = self.rate_limit.spend(key or "")
        if not allowed:
            info["fault"] = "rate_limited"
            return self._error(429, "too many requests.", limit_headers), info
        symbols_hint = (single_symbol,) if single_symbol else _symbols_hint(query)
        identity = f"{key}|{path}|{sorted(query)}"
        fault = self.faults.decide(identity, symbols_hint)
        info["fault"] = fault
        if fault is not None:
            return self._fault_reply(fault, limit_headers), info
        try:
            if latest:
                payload, count = self._latest(query)
            elif actions:
                payload, count = self._corporate_actions(query)
            else:
                request = self._parse(query, single_symbol)
                payload, count = self._page(request, query, single_symbol)
        except BadRequest as exc:
            return self._error(exc.status, exc.message, limit_headers, exc.code), info
        info["bars"] = count
        return Reply(200, _json(payload), {**limit_headers}), info

    def _latest(self, query: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
        """``/v2/stocks/bars/latest``: each symbol's most recent complete minute bar.

        Unknown symbols are omitted. ``delayed_sip`` is SIP as of 15 minutes ago; on the free
        plan ``sip`` is refused, and an omitted feed means IEX.
        """
        params = dict(query)
        unexpected = sorted(set(params) - {"symbols", "feed", "currency"})
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        symbols = [s.strip() for s in params.get("symbols", "").split(",") if s.strip()]
        if not symbols:
            raise BadRequest("symbols is required")
        feed = params.get("feed", "iex" if self.config.plan == "free" else "sip")
        if feed not in _LATEST_FEEDS:
            raise BadRequest(f"invalid feed: {feed}")
        if feed == "sip" and self.config.plan == "free":
            raise _recent_sip_refused()
        now = self.market_clock()
        if feed == "delayed_sip":
            feed, now = "sip", now - FREE_PLAN_SIP_DELAY
        recent = trading_sessions(new_york_date(now) - dt.timedelta(days=14), new_york_date(now))
        minute = Timeframe.parse("1Min")
        bars: dict[str, Any] = {}
        for symbol in sorted(set(symbols)):
            for session in reversed(recent):
                done = self.market.bars(symbol, session, feed, minute, as_of=now.timestamp())
                if done:
                    bars[symbol] = orjson.Fragment(self._encode_bars(done[-1:])[0])
                    break
        return {"bars": bars}, len(bars)

    def _corporate_actions(self, query: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
        """``/v1/corporate-actions``: the configured records matching symbols, types and a
        ``process_date`` range, oldest first, ``limit`` records per page across groups; a
        record exists from its process date on (New York)."""
        params = dict(query)
        allowed = {"symbols", "cusips", "types", "start", "end", "ids", "limit", "page_token",
                   "sort", "region", "data_quality"}  # fmt: skip
        unexpected = sorted(set(params) - allowed)
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        symbols = {s.strip() for s in params.get("symbols", "").split(",") if s.strip()}
        if not symbols:
            raise BadRequest("one of symbols, cusips or ids is required")
        types = {t.strip() for t in params.get("types", "").split(",") if t.strip()}
        today = new_york_date(self.market_clock())
        start = _parse_day(params.get("start"), "start") or today
        end = _parse_day(params.get("end"), "end") or today
        if end < start:
            raise BadRequest("end should not be before start")
        try:
            limit = int(params.get("limit", 100))
        except ValueError:
            raise BadRequest("invalid limit") from None
        if not 1 <= limit <= 1000:
            raise BadRequest("invalid limit: must be between 1 and 1000")
        if params.get("sort", "asc") not in ("asc", "desc"):
            raise BadRequest(f"invalid sort: {params['sort']}")
        matching = sorted(
            (
                (group, record)
                for group, record in self.config.corporate_actions
                if _action_symbols(record) & symbols
                and (not types or group.removesuffix("s") in types)
                and start.isoformat() <= str(record.get("process_date")) <= end.isoformat()
                # The vendor knows an action from its process date on.
                and str(record.get("process_date")) <= today.isoformat()
            ),
            key=lambda item: (str(item[1].get("process_date")), str(item[1].get("id"))),
            reverse=params.get("sort") == "desc",
        )
        identity = "|".join(params.get(name, "") for name in ("symbols", "types", "start", "end",
                                                              "sort"))  # fmt: skip
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        offset = _action_offset(params.get("page_token"), digest) if "page_token" in params else 0
        page = matching[offset : offset + limit]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for group, record in page:
            grouped.setdefault(group, []).append(record)
        more = offset + limit < len(matching)
        token = base64.b64encode(f"{offset + limit}|{digest}".encode()).decode() if more else None
        return {"corporate_actions": grouped, "next_page_token": token}, len(page)

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[str | None, Reply | None]:
        key_id = headers.get("APCA-API-KEY-ID", "")
        secret = headers.get("APCA-API-SECRET-KEY", "")
        bearer = headers.get("Authorization", "")
        if key_id and secret:
            fingerprint = hashlib.sha256(key_id.encode()).hexdigest()[:12]
            if self.config.strict_keys and (
                key_id != self.config.key_id or secret != self.config.secret_key
            ):
                return fingerprint, self._error(403, "forbidden.")
            return fingerprint, None
        if bearer.startswith("Bearer ") and bearer[7:].strip() and not self.config.strict_keys:
            return hashlib.sha256(bearer.encode()).hexdigest()[:12], None
        return None, self._error(401, "authentication headers are missing or invalid")

    def _fault_reply(self, fault: str, limit_headers: dict[str, str]) -> Reply:
        faults = self.config.faults
        if fault.startswith("fail_symbol:"):
            symbol = fault.split(":", 1)[1]
            status = faults.fail_symbols[symbol]
            return self._error(status, f"injected failure for {symbol}", limit_headers)
        if fault in STATUS_FAULTS:
            status = STATUS_FAULTS[fault]
            headers = dict(limit_headers)
            if fault == "429_retry_after":
                headers["Retry-After"] = str(faults.retry_after_seconds)
            if fault == "429_reset":
                headers["X-RateLimit-Remaining"] = "0"
                headers["X-RateLimit-Reset"] = str(
                    math.ceil(self.clock()) + faults.reset_after_seconds
                )
            if status == 502:
                body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
                return Reply(status, body, {**headers, "Content-Type": "text/html"})
            message = "too many requests." if status == 429 else "internal server error"
            return self._error(status, message, headers)
        if fault == "invalid_json":
            return Reply(200, b'{"bars":{"AAPL":[{"t":"2024-01-02T', dict(limit_headers))
        # Wire faults still carry a valid body for the "slow" case.
        return Reply(200, _json({"bars": {}, "next_page_token": None}), dict(limit_headers), fault)

    @staticmethod
    def _error(
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        code: int | None = None,
    ) -> Reply:
        body = {"message": message} if code is None else {"code": code, "message": message}
        return Reply(status, _json(body), dict(headers or {}))

    def _parse(self, query: list[tuple[str, str]], single_symbol: str | None) -> BarsRequest:
        params: dict[str, str] = {}
        for name, value in query:
            params[name] = value
        allowed = _COMMON_PARAMS | _IGNORED_PARAMS | (set() if single_symbol else {"symbols"})
        unexpected = sorted(set(params) - allowed)
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        raw_symbols = [single_symbol] if single_symbol else params.get("symbols", "").split(",")
        symbols = [symbol.strip() for symbol in raw_symbols if symbol and symbol.strip()]
        if not symbols:
            raise BadRequest("symbols is required")
        for symbol in symbols:
            try:
                check_symbol(symbol)
            except ValueError:
                raise BadRequest(f"invalid symbol: {symbol}") from None
        if "timeframe" not in params:
            raise BadRequest("timeframe is required")
        try:
            timeframe = Timeframe.parse(params["timeframe"])
        except ValueError:
            raise BadRequest("invalid timeframe", 422) from None
        now = self.market_clock()
        free = self.config.plan == "free"
        delayed = now - FREE_PLAN_SIP_DELAY
        # The free plan's defaults: `end` is 15 minutes ago unless the feed is real-time for
        # it (IEX), and a missing feed means SIP when `end` is old enough, else silently IEX.
        explicit_end = _parse_time(params.get("end"), "end")
        feed = params.get("feed") or ("sip" if not free or (explicit_end or now) <= delayed
                                      else "iex")  # fmt: skip
        if feed not in _FEEDS:
            raise BadRequest(f"invalid feed: {feed}")
        end = explicit_end or (delayed if free and feed == "sip" else now)
        start = _parse_time(params.get("start"), "start") or min(
            _start_of_new_york_day(now), delayed
        )
        if end < start:
            raise BadRequest("end should not be before start")
        if free and feed == "sip" and end > delayed:
            raise _recent_sip_refused()
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise BadRequest("invalid limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"invalid limit: must be between 1 and {MAX_LIMIT}")
        try:
            adjustment = check_adjustment(params.get("adjustment", "raw"))
        except ValueError:
            raise BadRequest(f"invalid adjustment: {params['adjustment']}") from None
        if params.get("sort", "asc") not in ("asc", "desc"):
            raise BadRequest(f"invalid sort: {params['sort']}")
        if params.get("sort") == "desc":
            raise BadRequest("sort=desc is not supported by the simulator", 422)
        identity = "|".join(
            f"{name}={params.get(name, '')}"
            for name in ("symbols", "timeframe", "start", "end", "feed", "adjustment")
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
        )

    def _page(
        self, request: BarsRequest, query: list[tuple[str, str]], single_symbol: str | None
    ) -> tuple[dict[str, Any], int]:
        token = dict(query).get("page_token")
        position = _decode_token(token, request) if token else (request.symbols[0], None, 0)
        encoded, next_position = self._collect(request, position)
        next_token = _encode_token(next_position, request) if next_position else None
        count = sum(len(rows) for rows in encoded.values())
        groups = {symbol: _json_list(rows) for symbol, rows in encoded.items()}
        if single_symbol is not None:
            rows = groups.get(single_symbol)
            return {"bars": rows, "symbol": single_symbol, "next_page_token": next_token}, count
        return {"bars": groups, "next_page_token": next_token}, count

    def _collect(
        self, request: BarsRequest, position: tuple[str, dt.date | None, int]
    ) -> tuple[dict[str, list[bytes]], tuple[str, dt.date, int] | None]:
        """Encoded bars from ``position`` on, ordered by symbol then time, at most ``limit``."""
        first_symbol, first_date, first_index = position
        sessions = trading_sessions(new_york_date(request.start), new_york_date(request.end))
        start_s, end_s = request.start.timestamp(), request.end.timestamp()
        remaining = request.limit
        groups: dict[str, list[bytes]] = {}
        for symbol in request.symbols[request.symbols.index(first_symbol) :]:
            resuming = symbol == first_symbol
            for session in sessions:
                if resuming and first_date is not None and session.date < first_date:
                    continue
                skip = first_index if resuming and session.date == first_date else 0
                bars = self._session_bars(symbol, session, request, start_s, end_s)
                taken = bars[skip : skip + remaining]
                if taken:
                    groups.setdefault(symbol, []).extend(taken)
                    remaining -= len(taken)
                if remaining == 0:
                    return groups, (symbol, session.date, skip + len(taken))
        return groups, None

    def _session_bars(
        self, symbol: str, session: Session, request: BarsRequest, start_s: float, end_s: float
    ) -> list[bytes]:
        """The session's bars inside ``[start_s, end_s]``, each encoded as JSON."""
        if request.adjustment:
            bars = self._adjusted_bars(symbol, session, request)
            times, encoded = [bar.t for bar in bars], self._encode_bars(bars, adjusted=True)
        elif _settled(session, request.timeframe, request.as_of):
            times, encoded = self._encoded_session(symbol, session, request.feed, request.timeframe)
        else:  # still changing: what exists at this instant, never cached
            bars = self._market_bars(symbol, session, request.feed, request.timeframe,
                                     request.as_of)  # fmt: skip
            times, encoded = [bar.t for bar in bars], self._encode_bars(bars)
        return encoded[bisect.bisect_left(times, start_s) : bisect.bisect_right(times, end_s)]

    def _adjusted_bars(self, symbol: str, session: Session, request: BarsRequest) -> list[Bar]:
        """The session's bars adjusted for the actions the vendor knows at the request."""
        bars = self._market_bars(symbol, session, request.feed, request.timeframe, request.as_of)
        known_on = new_york_date(dt.datetime.fromtimestamp(request.as_of, dt.UTC))
        price, volume = self.actions.adjustment_factors(
            symbol,
            session.date,
            request.adjustment,
            known_on,
            lambda name, before: self._reference_close(name, before, request.as_of),
        )
        if price == 1.0 and volume == 1.0:
            return bars
        return [
            bar._replace(
                o=bar.o * price,
                h=bar.h * price,
                l=bar.l * price,
                c=bar.c * price,
                vw=bar.vw * price,
                v=bar.v * volume,
            )
            for bar in bars
        ]

    def _reference_close(self, symbol: str, session: Session, as_of: float) -> float | None:
        """The raw SIP close of ``session``'s last regular-hours minute, once it is over."""
        close_s = session.close.timestamp()
        if as_of < close_s:
            return None
        minute = Timeframe.parse("1Min")
        regular = [
            bar for bar in self.market.bars(symbol, session, "sip", minute) if bar.t < close_s
        ]
        return regular[-1].c if regular else None

    def _market_bars(
        self,
        symbol: str,
        session: Session,
        feed: str,
        timeframe: Timeframe,
        as_of: float | None = None,
    ) -> list[Bar]:
        try:
            return self.market.bars(symbol, session, feed, timeframe, as_of)
        except ValueError as exc:
            raise BadRequest(str(exc), 422) from None

    def _encoded_session(
        self, symbol: str, session: Session, feed: str, timeframe: Timeframe
    ) -> tuple[list[int], list[bytes]]:
        """Bar times and JSON encodings of one session, generated once and kept in a bounded
        cache: pages of a paginated stream, and reruns, ask for the same sessions again."""
        key = (symbol, session.date, feed, str(timeframe))
        with self._cache_lock:
            cached = self._encoded.get(key)
            if cached is not None:
                self._encoded.move_to_end(key)
                return cached
        bars = self._market_bars(symbol, session, feed, timeframe)
        encoded = ([bar.t for bar in bars], self._encode_bars(bars))
        with self._cache_lock:
            self._encoded[key] = encoded
            while len(self._encoded) > ENCODED_SESSIONS_KEPT:
                self._encoded.popitem(last=False)
        return encoded

    def _encode_bars(self, bars: list[Bar], adjusted: bool = False) -> list[bytes]:
        """Each bar as Alpaca's JSON object: whole-number prices as integers, NaN as is;
        ``adjusted`` bars may have fractional volumes."""
        if not bars:
            return []
        t, o, h, low, c, v, n, vw = (list(column) for column in zip(*bars, strict=True))
        volumes = _json_numbers(v) if adjusted else [b"%d" % value for value in v]
        stamps = np.datetime_as_string(np.array(t, dtype="datetime64[s]"), unit="s").tolist()
        suffix = ".000000000Z" if self.config.fractional_timestamps else "Z"
        stamps = [f"{stamp}{suffix}".encode() for stamp in stamps]
        prices = [_json_numbers(column) for column in (o, h, low, c, vw)]
        return [
            b'{"t":"%s","o":%s,"h":%s,"l":%s,"c":%s,"v":%s,"n":%d,"vw":%s}' % fields
            for fields in zip(stamps, *prices[:4], volumes, n, prices[4], strict=True)
        ]


def _settled(session: Session, timeframe: Timeframe, as_of: float) -> bool:
    """Whether ``session``'s bars have their final form at ``as_of`` (then they are cached)."""
    if timeframe.unit is TimeframeUnit.DAY:
        return as_of >= daily_recalculation(session).timestamp()
    return as_of >= session.extended_window("sip")[1].timestamp()


def _json_numbers(values: list[float]) -> list[bytes]:
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


def _symbols_hint(query: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(
        symbol.strip() for name, value in query if name == "symbols" for symbol in value.split(",")
    )


def _parse_time(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return new_york_midnight(day)
        return parse_rfc3339(value, name)
    except ValueError:
        raise BadRequest(f"invalid {name}") from None


def _parse_day(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"invalid {name}: use YYYY-MM-DD") from None


def _action_symbols(record: dict[str, Any]) -> set[str]:
    """Every symbol a corporate action record names (old, new, source, acquirer ...)."""
    return {str(value) for key, value in record.items() if key.endswith("symbol") and value}


def _action_offset(token: str | None, digest: str) -> int:
    try:
        offset, token_digest = base64.b64decode(token or "", validate=True).decode().split("|")
        position = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page_token") from None
    if token_digest != digest or position < 0:
        raise BadRequest("invalid page_token: it belongs to a different query")
    return position


def _start_of_new_york_day(now: dt.datetime) -> dt.datetime:
    return new_york_midnight(new_york_date(now))


def _encode_token(position: tuple[str, dt.date, int], request: BarsRequest) -> str:
    symbol, day, index = position
    text = f"{symbol}|{request.timeframe}|{day.isoformat()}|{index}|{request.digest}"
    return base64.b64encode(text.encode()).decode()


def _decode_token(token: str, request: BarsRequest) -> tuple[str, dt.date, int]:
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
