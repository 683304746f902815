"""Alpaca's trades and quotes, served from the synthetic market's prints (see
:mod:`marketpipe.simulator.ticks`).

- ``GET /v2/stocks/trades`` and ``/v2/stocks/quotes`` (``symbols``), or
  ``/v2/stocks/{symbol}/trades|quotes``: ``start``, ``end`` (RFC-3339, inclusive), ``limit``
  (default 1,000, at most 10,000, across symbols), ``feed``, ``asof``, ``sort`` (``asc``),
  ``page_token``, ``currency``.
- A trade is ``{"t", "x", "p", "s", "c", "i", "z"}``, a quote ``{"t", "ax", "ap", "as",
  "bx", "bp", "bs", "c", "z"}``; ``t`` has nanoseconds. The multi-symbol answer groups them
  by symbol (``{}`` when none) with ``next_page_token``; the single one is a list (``null``
  when none) with ``symbol``.
- Only minutes that are over at the market's clock have prints yet.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from marketpipe.markettime.calendar import new_york_date, trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator.market import Bar, SyntheticMarket
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.ticks import MinuteQuotes, MinuteTrades, minute_quotes, minute_trades
from marketpipe.simulator.wire import (
    BadRequest,
    check_sort,
    json_list,
    json_numbers,
    parse_asof,
    requested_limit,
    requested_symbols,
    requested_window,
)

KINDS = ("trades", "quotes")
_PARAMS = {"symbols", "start", "end", "limit", "page_token", "feed", "asof", "sort", "currency"}
_MINUTE = Timeframe.parse("1Min")
_TAPES = ("A", "B", "C")


def is_ticks_path(parts: list[str]) -> tuple[str, str | None] | None:
    """``(kind, single symbol)`` when a path asks for trades or quotes, else ``None``."""
    if len(parts) == 3 and parts[:2] == ["v2", "stocks"] and parts[2] in KINDS:
        return parts[2], None
    if len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] in KINDS:
        return parts[3], parts[2]
    return None


@dataclass(frozen=True)
class TicksRequest:
    """A validated trades or quotes query."""

    kind: str
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int
    limit: int
    feed: str
    asof: dt.date | None
    digest: str


def parse_ticks_request(
    kind: str,
    query: list[tuple[str, str]],
    single_symbol: str | None,
    now: dt.datetime,
    plan: str,
) -> TicksRequest:
    """Validate a trades or quotes query as Alpaca does, at market time ``now``."""
    params = dict(query)
    allowed = _PARAMS - ({"symbols"} if single_symbol else set())
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    symbols = sorted(set(requested_symbols(params, single_symbol)))
    feed, start, end = requested_window(params, now, plan)
    limit = requested_limit(params)
    check_sort(params)
    identity = "|".join(
        f"{name}={params.get(name, '')}" for name in sorted(_PARAMS - {"page_token", "limit"})
    )
    return TicksRequest(
        kind=kind,
        symbols=tuple(symbols),
        start_ns=_ns(start),
        end_ns=_ns(min(end, now)),
        limit=limit,
        feed=feed,
        asof=parse_asof(params.get("asof"), new_york_date(now)),
        digest=hashlib.sha256(f"{kind}|{single_symbol}|{identity}".encode()).hexdigest()[:10],
    )


# Where a page resumes: symbol, session, minute index in it, print index in the minute.
Position = tuple[str, dt.date, int, int]
# How one minute's prints inside the request go on the wire: (request, stream key, bar,
# tape, minute index in the session) -> encoded JSON objects.
MinuteEncoder = Callable[["TicksRequest", str, Bar, str, int], list[bytes]]


class TickServer:
    """Pages of trades or quotes, each minute's prints drawn from its own stream."""

    def __init__(
        self, market: SyntheticMarket, book: SecurityBook | None = None, quotes_per_trade: int = 10
    ) -> None:
        self.market = market
        self.book = book or SecurityBook()
        self.quotes_per_trade = quotes_per_trade

    def page(
        self, request: TicksRequest, query: list[tuple[str, str]], single: str | None, now: float
    ) -> tuple[dict[str, Any], int]:
        """One page of ``request`` from its ``page_token`` on, with the next token."""
        token = dict(query).get("page_token")
        position = _decode(token, request) if token else (request.symbols[0], dt.date.min, 0, 0)
        groups, resume = self.collect(request, position, now, self._encode_minute)
        next_token = _encode(resume, request) if resume else None
        count = sum(len(rows) for rows in groups.values())
        kind = request.kind
        if single is not None:
            rows = json_list(groups[single]) if single in groups else None
            return {kind: rows, "symbol": single, "next_page_token": next_token}, count
        grouped = {symbol: json_list(rows) for symbol, rows in groups.items()}
        return {kind: grouped, "next_page_token": next_token}, count

    def collect(
        self, request: TicksRequest, position: Position, now: float, encode: MinuteEncoder
    ) -> tuple[dict[str, list[bytes]], Position | None]:
        """Up to ``request.limit`` prints from ``position`` on, encoded by ``encode`` and
        grouped by symbol, and where the next page resumes (``None``: the end)."""
        groups: dict[str, list[bytes]] = {}
        remaining, resume = request.limit, None
        for symbol, day, minute, encoded in self._minutes(request, position, now, encode):
            taken = encoded[:remaining]
            if taken:
                groups.setdefault(symbol, []).extend(taken)
                remaining -= len(taken)
            if remaining == 0:
                skipped = position[3] if (symbol, day, minute) == position[:3] else 0
                resume = (symbol, day, minute, skipped + len(taken))
                break
        return groups, resume

    def _minutes(
        self, request: TicksRequest, position: Position, now: float, encode: MinuteEncoder
    ) -> Iterator[tuple[str, dt.date, int, list[bytes]]]:
        """Each minute's encoded prints inside the range, from ``position`` on."""
        first = new_york_date(dt.datetime.fromtimestamp(request.start_ns / 1e9, dt.UTC))
        last = new_york_date(dt.datetime.fromtimestamp(request.end_ns / 1e9, dt.UTC))
        sessions = trading_sessions(first, last)
        start_symbol, start_day, start_minute, start_print = position
        for symbol in request.symbols[request.symbols.index(start_symbol) :]:
            for session in sessions:
                resuming = symbol == start_symbol
                if resuming and session.date < start_day:
                    continue
                series = self.book.series(symbol, session.date, request.asof)
                if series is None:
                    continue
                bars = self.market.bars(series, session, request.feed, _MINUTE, as_of=now)
                key = f"{self.market.seed}|{series}|{request.feed}"
                tape = _TAPES[int(hashlib.sha256(series.encode()).digest()[0]) % 3]
                for index, bar in enumerate(bars):
                    at_start = resuming and session.date == start_day
                    if at_start and index < start_minute:
                        continue
                    if (bar.t + 60) * 10**9 <= request.start_ns or bar.t * 10**9 > request.end_ns:
                        continue
                    encoded = encode(request, key, bar, tape, index)
                    skip = start_print if at_start and index == start_minute else 0
                    yield symbol, session.date, index, encoded[skip:]

    def minute_prints(
        self, request: TicksRequest, key: str, bar: Bar
    ) -> tuple[MinuteTrades | MinuteQuotes, np.ndarray]:
        """The minute's trades or quotes, and which of them lie inside [start, end]."""
        trades = minute_trades(key, bar.t, (bar.o, bar.h, bar.l, bar.c, bar.v, bar.n, bar.vw))
        prints: MinuteTrades | MinuteQuotes = trades
        if request.kind == "quotes":
            prints = minute_quotes(key, bar.t, trades, self.quotes_per_trade)
        return prints, (prints.times >= request.start_ns) & (prints.times <= request.end_ns)

    def _encode_minute(
        self, request: TicksRequest, key: str, bar: Bar, tape: str, minute: int
    ) -> list[bytes]:
        """The minute's trades or quotes inside [start, end], as Alpaca's JSON objects."""
        prints, inside = self.minute_prints(request, key, bar)
        if isinstance(prints, MinuteTrades):
            return _encoded_trades(prints, inside, tape)
        quotes = prints
        if not inside.any():
            return []
        stamps = _stamps(quotes.times[inside])
        columns = (
            stamps,
            [x.encode() for x, keep in zip(quotes.ask_exchanges, inside, strict=True) if keep],
            json_numbers(quotes.ask_prices[inside].tolist()),
            quotes.ask_sizes[inside].tolist(),
            [x.encode() for x, keep in zip(quotes.bid_exchanges, inside, strict=True) if keep],
            json_numbers(quotes.bid_prices[inside].tolist()),
            quotes.bid_sizes[inside].tolist(),
        )
        return [
            b'{"t":"%s","ax":"%s","ap":%s,"as":%d,"bx":"%s","bp":%s,"bs":%d,"c":["R"],"z":"%s"}'
            % (*fields, tape.encode())
            for fields in zip(*columns, strict=True)
        ]


def _encoded_trades(trades: MinuteTrades, inside: np.ndarray, tape: str) -> list[bytes]:
    chosen = np.flatnonzero(inside).tolist()
    if not chosen:
        return []
    stamps = _stamps(trades.times[inside])
    prices = json_numbers(trades.prices[inside].tolist())
    sizes, ids = trades.sizes.tolist(), trades.ids.tolist()
    return [
        b'{"t":"%s","x":"%s","p":%s,"s":%d,"c":%s,"i":%d,"z":"%s"}'
        % (
            stamp,
            trades.exchanges[index].encode(),
            price,
            sizes[index],
            orjson.dumps(list(trades.conditions[index])),
            ids[index],
            tape.encode(),
        )
        for stamp, price, index in zip(stamps, prices, chosen, strict=True)
    ]


def _stamps(times: np.ndarray) -> list[bytes]:
    """RFC-3339 UTC with nanoseconds, as Alpaca stamps prints."""
    text = np.datetime_as_string(times.astype("datetime64[ns]"), unit="ns").tolist()
    return [f"{stamp}Z".encode() for stamp in text]


def _ns(instant: dt.datetime) -> int:
    return int(instant.timestamp()) * 10**9 + instant.microsecond * 1000


def _encode(position: Position, request: TicksRequest) -> str:
    symbol, day, minute, index = position
    text = f"{symbol}|{day.isoformat()}|{minute}|{index}|{request.digest}"
    return base64.b64encode(text.encode()).decode()


def _decode(token: str, request: TicksRequest) -> Position:
    try:
        symbol, day, minute, index, digest = (
            base64.b64decode(token, validate=True).decode().split("|")
        )
        position = (symbol, dt.date.fromisoformat(day), int(minute), int(index))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page_token") from None
    if digest != request.digest or symbol not in request.symbols:
        raise BadRequest("invalid page_token: it belongs to a different query")
    return position
