"""Bars served from the synthetic market: pages of a query, latest bars, adjustments, a cache."""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import threading
from typing import Any

import numpy as np
import orjson

from marketpipe.markettime.calendar import Session, new_york_date, trading_sessions
from marketpipe.markettime.finality import FREE_PLAN_SIP_DELAY
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.simulator.actions import ActionBook
from marketpipe.simulator.market import Bar, SyntheticMarket, daily_recalculation, scaled
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.wire import (
    LATEST_FEEDS,
    BadRequest,
    BarsRequest,
    decode_token,
    encode_token,
    json_list,
    json_numbers,
    recent_sip_refused,
)

# Encoded sessions kept in memory (about 100 kB each for a liquid symbol's 1-minute bars).
ENCODED_SESSIONS_KEPT = 2048


class BarServer:
    """Answers bars queries from the market, keeping encoded settled sessions in a bounded cache.

    A ticker asked for is mapped to a security with the request's ``asof`` (see
    :class:`~marketpipe.simulator.securities.SecurityBook`); its bars come back under the
    ticker asked for, whatever the security traded as on each day.
    """

    def __init__(
        self,
        market: SyntheticMarket,
        actions: ActionBook,
        fractional_timestamps: bool = False,
        book: SecurityBook | None = None,
    ) -> None:
        self.market = market
        self.actions = actions
        self.fractional_timestamps = fractional_timestamps
        self.book = book or SecurityBook()
        self._encoded: collections.OrderedDict[
            tuple[str, dt.date, str, str], tuple[list[int], list[bytes]]
        ] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def latest(
        self, query: list[tuple[str, str]], now: dt.datetime, plan: str
    ) -> tuple[dict[str, Any], int]:
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
        feed = params.get("feed", "iex" if plan == "free" else "sip")
        if feed not in LATEST_FEEDS:
            raise BadRequest(f"invalid feed: {feed}")
        if feed == "sip" and plan == "free":
            raise recent_sip_refused()
        if feed == "delayed_sip":
            feed, now = "sip", now - FREE_PLAN_SIP_DELAY
        today = new_york_date(now)
        recent = trading_sessions(today - dt.timedelta(days=14), today)
        minute = Timeframe.parse("1Min")
        bars: dict[str, Any] = {}
        for symbol in sorted(set(symbols)):
            for session in reversed(recent):
                series = self.book.series(symbol, session.date, today)
                if series is None:
                    continue
                done = self.market.bars(series, session, feed, minute, as_of=now.timestamp())
                if done:
                    bars[symbol] = orjson.Fragment(self._encode_bars(done[-1:])[0])
                    break
        return {"bars": bars}, len(bars)

    def page(
        self, request: BarsRequest, query: list[tuple[str, str]], single_symbol: str | None
    ) -> tuple[dict[str, Any], int]:
        """One page of ``request``: from its ``page_token`` on, with the next token."""
        token = dict(query).get("page_token")
        position = decode_token(token, request) if token else (request.symbols[0], None, 0)
        encoded, next_position = self._collect(request, position)
        next_token = encode_token(next_position, request) if next_position else None
        count = sum(len(rows) for rows in encoded.values())
        groups = {symbol: json_list(rows) for symbol, rows in encoded.items()}
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
        """The session's bars inside ``[start_s, end_s]``, each encoded as JSON: those of the
        series ``symbol`` names on that day for the request's ``asof``."""
        series = self.book.series(symbol, session.date, request.asof)
        if series is None:
            return []
        symbol = series
        if request.adjustment:
            bars = self._adjusted_bars(symbol, session, request)
            times, encoded = [bar.t for bar in bars], self._encode_bars(bars, adjusted=True)
        elif _settled(session, request.timeframe, request.as_of):
            times, encoded = self._encoded_session(symbol, session, request.feed, request.timeframe)
        else:  # still changing: what exists at this instant, never cached
            bars = self._market_bars(
                symbol, session, request.feed, request.timeframe, request.as_of
            )
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
        return scaled(bars, price, volume)

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
        volumes = json_numbers(v) if adjusted else [b"%d" % value for value in v]
        stamps = np.datetime_as_string(np.array(t, dtype="datetime64[s]"), unit="s").tolist()
        suffix = ".000000000Z" if self.fractional_timestamps else "Z"
        stamps = [f"{stamp}{suffix}".encode() for stamp in stamps]
        prices = [json_numbers(column) for column in (o, h, low, c, vw)]
        return [
            b'{"t":"%s","o":%s,"h":%s,"l":%s,"c":%s,"v":%s,"n":%d,"vw":%s}' % fields
            for fields in zip(stamps, *prices[:4], volumes, n, prices[4], strict=True)
        ]


def _settled(session: Session, timeframe: Timeframe, as_of: float) -> bool:
    """Whether ``session``'s bars have their final form at ``as_of`` (then they are cached)."""
    if timeframe.unit is TimeframeUnit.DAY:
        return as_of >= daily_recalculation(session).timestamp()
    return as_of >= session.extended_window("sip")[1].timestamp()
