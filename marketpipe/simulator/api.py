"""Alpaca Market Data v2 bars, answered from the synthetic market: the wire format exactly.

This module is HTTP-free: :meth:`SimulatorApp.handle` turns a request (path, query,
headers) into a :class:`Reply`; ``server.py`` puts it on the wire.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from marketpipe.markettime import clock as market_clock
from marketpipe.markettime.calendar import new_york_date
from marketpipe.simulator.actions import DEMO_CORPORATE_ACTIONS, ActionBook
from marketpipe.simulator.actions_api import corporate_actions_page
from marketpipe.simulator.assets_api import assets_answer, is_assets_path, security_action_records
from marketpipe.simulator.bars_api import BarServer
from marketpipe.simulator.faults import FaultConfig, FaultInjector
from marketpipe.simulator.market import DEFAULT_OUTSIDE_RANGE_RATE, SyntheticMarket
from marketpipe.simulator.news_api import NewsDesk
from marketpipe.simulator.polygon_actions import actions_page, is_polygon_actions_path
from marketpipe.simulator.polygon_api import PolygonAggregates, is_polygon_path, polygon_error
from marketpipe.simulator.polygon_news import PATH as POLYGON_NEWS_PATH
from marketpipe.simulator.polygon_news import news_page
from marketpipe.simulator.polygon_reference import ReferenceData, is_reference_path
from marketpipe.simulator.polygon_ticks import PolygonTicks, is_polygon_ticks_path
from marketpipe.simulator.replies import (
    Reply,
    error_reply,
    fault_reply,
    nginx_401,
    polygon_reply,
)
from marketpipe.simulator.request_log import RequestLog
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.ticks_api import TickServer, is_ticks_path, parse_ticks_request
from marketpipe.simulator.wire import (
    RECENT_SIP_CODE,
    RECENT_SIP_MESSAGE,
    BadRequest,
    json_bytes,
    parse_bars_request,
    symbols_hint,
)

__all__ = ["RECENT_SIP_CODE", "RECENT_SIP_MESSAGE", "Reply", "SimulatorApp", "SimulatorConfig"]

GZIP_MIN_BYTES = 256


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
    # Securities that were renamed, delisted or listed late, or whose ticker another company
    # took up later (records as simulator.securities.security_from_record reads them).
    securities: tuple[dict[str, Any], ...] = ()
    # Plain tickers ``GET /v2/assets`` lists as active besides the book's securities. The
    # real list names every asset; the made-up market serves any well-formed ticker, so it
    # lists those it is told of (the demo workflow's symbols). Unlisted ones are still
    # answered when asked for by name.
    listed_tickers: frozenset[str] = frozenset()
    # Quotes per trade print (a liquid stock's tape has about ten).
    quotes_per_trade: int = 10
    plan: Literal["paid", "free"] = "paid"
    fractional_timestamps: bool = False
    gzip_level: int = 1
    # What a Polygon next_url's opaque cursor carries of the request: all of its parameters,
    # or only limit and sort (a captured cursor decodes to just those): then a client that
    # re-sends next_url as given gets the default, adjusted, bars on later pages.
    polygon_cursor: Literal["request", "limit_sort"] = "request"
    # Which field the news window's start/end select on (the real API's is unconfirmed).
    news_window: Literal["created_at", "updated_at"] = "created_at"

    @property
    def strict_keys(self) -> bool:
        """True when only the configured key pair is accepted."""
        return self.key_id is not None or self.secret_key is not None


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
        (by default :func:`marketpipe.markettime.clock.now`, which tests pin with
        ``MARKETPIPE_NOW``)."""
        if config is not None and config.plan not in ("paid", "free"):
            raise ValueError(f"plan must be 'paid' or 'free', got {config.plan!r}")
        self.config = config or SimulatorConfig()
        self.clock = clock
        self.market_clock = market_clock
        self.actions = ActionBook(self.config.corporate_actions, strict=False)
        self.book = SecurityBook.from_records(self.config.securities)
        acted_on = sorted(
            symbol
            for symbol in {*self.actions.splits, *self.actions.dividends}
            if self.book.known(symbol)
        )
        if acted_on:
            raise ValueError(
                f"splits and dividends of {', '.join(acted_on)} are not simulated: their "
                "tickers belong to securities with a ticker history"
            )
        self.reference = ReferenceData(
            self.book, dict(self.config.listings), frozenset(self.config.unknown_symbols)
        )
        self.market = SyntheticMarket(
            self.config.seed,
            self.config.bad_bars,
            self.config.listings,
            self.config.unknown_symbols,
            self.config.outside_range_rate,
            self.config.corrections,
            self.actions,
        )
        self.faults = FaultInjector(self.config.faults)
        self.rate_limit = PerKeyRateLimit(
            self.config.rate_limit_per_minute, clock, self.config.rate_limit_window_seconds
        )
        self.log = request_log or RequestLog()
        self.bars = BarServer(
            self.market, self.actions, self.config.fractional_timestamps, self.book
        )
        self.polygon = PolygonAggregates(
            self.market, self.actions, self.market_clock, self.config.polygon_cursor, self.book
        )
        self.corporate_actions = self.config.corporate_actions + security_action_records(self.book)
        self.news = NewsDesk(self.config.seed, self.config.news_window)
        self.ticks = TickServer(self.market, self.book, self.config.quotes_per_trade)
        self.polygon_ticks = PolygonTicks(self.ticks)

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
        polygon = (
            is_polygon_path,
            is_reference_path,
            is_polygon_ticks_path,
            is_polygon_actions_path,
        )
        if any(recognises(parts) for recognises in polygon) or parts == POLYGON_NEWS_PATH:
            return self._polygon(parts, query, headers, info)
        latest = parts == ["v2", "stocks", "bars", "latest"]
        actions = parts == ["v1", "corporate-actions"]
        news = parts == ["v1beta1", "news"]
        assets = is_assets_path(parts)
        ticks = is_ticks_path(parts)
        if latest or actions or news or assets or parts == ["v2", "stocks", "bars"]:
            single_symbol = None
        elif ticks is not None:
            single_symbol = ticks[1]
        elif len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "bars":
            single_symbol = parts[2]
        else:
            return error_reply(404, "endpoint not found"), info
        key, auth_error = self._authenticate(headers)
        info["key"] = key
        if auth_error is not None:
            return auth_error, info
        allowed, limit_headers = self.rate_limit.spend(key or "")
        if not allowed:
            info["fault"] = "rate_limited"
            return error_reply(429, "too many requests.", limit_headers), info
        named = (single_symbol,) if single_symbol else symbols_hint(query)
        identity = f"{key}|{path}|{sorted(query)}"
        fault = self.faults.decide(identity, named)
        info["fault"] = fault
        if fault is not None and fault != "slow":
            endpoint = "news" if news else "bars"
            return fault_reply(
                fault, limit_headers, endpoint, self.config.faults, self.clock()
            ), info
        try:
            if latest:
                payload, count = self.bars.latest(query, self.market_clock(), self.config.plan)
            elif news:
                payload, count = self.news.page(query, self.market_clock(), self.config.plan)
            elif actions:
                today = new_york_date(self.market_clock())
                records = self.corporate_actions
                payload, count = corporate_actions_page(query, records, today)
            elif ticks is not None:
                now = self.market_clock()
                request = parse_ticks_request(ticks[0], query, single_symbol, now, self.config.plan)
                payload, count = self.ticks.page(request, query, single_symbol, now.timestamp())
            elif assets:
                today = new_york_date(self.market_clock())
                unknown = frozenset(self.config.unknown_symbols)
                listed = self.config.listed_tickers
                payload = assets_answer(parts, query, self.book, unknown, today, listed)
                count = 0
            else:
                request = parse_bars_request(
                    query, single_symbol, self.market_clock(), self.config.plan
                )
                payload, count = self.bars.page(request, query, single_symbol)
        except BadRequest as exc:
            return error_reply(exc.status, exc.message, limit_headers, exc.code), info
        info["bars"] = count
        return Reply(200, json_bytes(payload), {**limit_headers}, wire_fault=fault), info

    def _polygon(
        self,
        parts: list[str],
        query: list[tuple[str, str]],
        headers: Mapping[str, str],
        info: dict[str, Any],
    ) -> tuple[Reply, dict[str, Any]]:
        """Massive/Polygon aggregates, trades, quotes and reference data: key by
        ``Authorization: Bearer`` or ``apiKey``."""
        bearer = headers.get("Authorization", "")
        key = bearer[7:].strip() if bearer.startswith("Bearer ") else dict(query).get("apiKey", "")
        if not key or (self.config.strict_keys and key != self.config.key_id):
            return polygon_reply(*polygon_error(401, "Unknown API Key")), info
        info["key"] = hashlib.sha256(key.encode()).hexdigest()[:12]
        allowed, _ = self.rate_limit.spend(info["key"])
        if not allowed:  # the vendor's 429 carries no Retry-After and no rate headers
            info["fault"] = "rate_limited"
            message = (
                "You've exceeded the maximum requests per minute, please wait or upgrade your "
                "subscription to continue."
            )
            return polygon_reply(*polygon_error(429, message)), info
        named = (parts[3],) if len(parts) > 3 else ()
        fault = self.faults.decide(f"{info['key']}|{parts}|{sorted(query)}", named)
        info["fault"] = fault
        if fault is not None and fault != "slow":
            return fault_reply(fault, {}, "polygon", self.config.faults, self.clock()), info
        try:
            host = headers.get("Host") or headers.get("host") or "127.0.0.1"
            if is_polygon_ticks_path(parts):
                payload, count = self.polygon_ticks.page(parts, query, self.market_clock(), host)
            elif parts == POLYGON_NEWS_PATH:
                request_id = hashlib.sha256(f"{parts}{sorted(query)}".encode()).hexdigest()[:32]
                seed, now = self.config.seed, self.market_clock()
                payload, count = news_page(query, seed, now, host, request_id)
            elif is_polygon_actions_path(parts):
                request_id = hashlib.sha256(f"{parts}{sorted(query)}".encode()).hexdigest()[:32]
                today = new_york_date(self.market_clock())
                records = self.config.corporate_actions
                payload, count = actions_page(parts[2], query, records, today, host, request_id)
            elif is_reference_path(parts):
                request_id = hashlib.sha256(f"{parts}{sorted(query)}".encode()).hexdigest()[:32]
                today = new_york_date(self.market_clock())
                payload = self.reference.answer(parts, query, today, request_id)
                count = 0
            else:
                payload, count = self.polygon.page(parts, query, self.config.plan)
        except BadRequest as exc:
            key = "message" if exc.status in (403, 404) else "error"
            return polygon_reply(*polygon_error(exc.status, exc.message, key)), info
        info["bars"] = count
        return Reply(200, json_bytes(payload), wire_fault=fault), info

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[str | None, Reply | None]:
        key_id = headers.get("APCA-API-KEY-ID", "")
        secret = headers.get("APCA-API-SECRET-KEY", "")
        bearer = headers.get("Authorization", "")
        if key_id and secret:
            fingerprint = hashlib.sha256(key_id.encode()).hexdigest()[:12]
            if self.config.strict_keys and (
                key_id != self.config.key_id or secret != self.config.secret_key
            ):
                return fingerprint, nginx_401()
            return fingerprint, None
        if bearer.startswith("Bearer ") and bearer[7:].strip() and not self.config.strict_keys:
            return hashlib.sha256(bearer.encode()).hexdigest()[:12], None
        return None, nginx_401()
