"""Massive/Polygon trades and quotes, from the same prints as Alpaca's (see
:mod:`marketpipe.simulator.ticks_api`): one ticker per request, as traded.

- ``GET /v3/trades/{ticker}`` and ``/v3/quotes/{ticker}``: ``timestamp`` and its
  ``.gte``/``.gt``/``.lte``/``.lt`` forms (a nanosecond epoch, or ``YYYY-MM-DD``: that New
  York day), ``order`` and ``sort=timestamp``, ``limit`` (default 1,000, at most 50,000),
  and ``next_url`` paging with an opaque ``cursor`` that carries the whole query (the key is
  never in it). The vendor's default order is newest first; the simulator serves
  ``order=asc`` only and refuses the rest with a 400 naming it (clients ask ``asc``).
- A trade is ``{"conditions", "exchange", "id", "participant_timestamp", "price",
  "sequence_number", "sip_timestamp", "size", "tape"}`` as the official clients' models name
  them: exchange and conditions as Massive's numeric IDs (``conditions`` left out of a
  regular trade), ``id`` text, timestamps nanosecond epochs, ``tape`` 1/2/3 for A/B/C,
  ``sequence_number`` increasing within the day. A quote is ``{"ask_exchange", "ask_price",
  "ask_size", "bid_exchange", "bid_price", "bid_size", "participant_timestamp",
  "sequence_number", "sip_timestamp", "tape"}``.
- The page is ``{"results": [...], "status": "OK", "request_id", "next_url"}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import numpy as np
import orjson

from marketpipe.markettime.calendar import new_york_midnight
from marketpipe.simulator.market import Bar
from marketpipe.simulator.massive_paging import next_url, requested_limit, with_carried
from marketpipe.simulator.ticks import ODD_LOT, OUTSIDE_RANGE, MinuteTrades
from marketpipe.simulator.ticks_api import Position, TickServer, TicksRequest
from marketpipe.simulator.wire import BadRequest, json_list

KINDS = ("trades", "quotes")
MAX_LIMIT = 50_000
DEFAULT_LIMIT = 1_000
_BOUNDS = ("timestamp", "timestamp.gte", "timestamp.gt", "timestamp.lte", "timestamp.lt")
_PARAMS = {*_BOUNDS, "order", "sort", "limit", "cursor", "apiKey"}
# Massive's exchange IDs (its /v3/reference/exchanges) of the participant letters the
# simulated prints carry, and its trade condition IDs (/v3/reference/conditions).
EXCHANGE_IDS = {
    "A": 1,
    "B": 2,
    "C": 3,
    "D": 4,
    "I": 6,
    "J": 7,
    "K": 8,
    "M": 9,
    "N": 10,
    "P": 11,
    "Q": 12,
    "S": 13,
    "L": 14,
    "V": 15,
    "W": 16,
    "X": 17,
    "Y": 18,
    "Z": 19,
    "H": 20,
    "U": 21,
}
CONDITION_IDS = {ODD_LOT: 37, OUTSIDE_RANGE: 10}  # odd lot; derivatively priced
TAPE_IDS = {"A": 1, "B": 2, "C": 3}
_SEQUENCE_PER_MINUTE = 1_000_000  # sequence numbers: increasing within the day, not contiguous
_LATENCY_NS = 180_000  # participant (exchange) time precedes SIP time by this much, or more


def is_polygon_ticks_path(parts: list[str]) -> bool:
    """Whether a path asks for Massive's trades or quotes of a ticker."""
    return len(parts) == 3 and parts[0] == "v3" and parts[1] in KINDS and bool(parts[2])


def _instant(text: str, name: str, *, end: bool) -> int:
    """A bound as a nanosecond epoch: a date means its New York day (from its first instant,
    or up to its last when ``end``)."""
    if text.isdigit():
        return int(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: expected a nanosecond timestamp or YYYY-MM-DD") from None
    midnight = new_york_midnight(day + dt.timedelta(days=1) if end else day)
    return int(midnight.timestamp()) * 10**9 - (1 if end else 0)


def _window(params: dict[str, str]) -> tuple[int, int]:
    """The inclusive [first, last] nanoseconds the bounds select."""
    first, last = 0, 2**63 - 1
    if "timestamp" in params:
        value = params["timestamp"]
        first = _instant(value, "timestamp", end=False)
        last = _instant(value, "timestamp", end=True)
    if "timestamp.gte" in params:
        first = max(first, _instant(params["timestamp.gte"], "timestamp.gte", end=False))
    if "timestamp.gt" in params:
        first = max(first, _instant(params["timestamp.gt"], "timestamp.gt", end=True) + 1)
    if "timestamp.lte" in params:
        last = min(last, _instant(params["timestamp.lte"], "timestamp.lte", end=True))
    if "timestamp.lt" in params:
        last = min(last, _instant(params["timestamp.lt"], "timestamp.lt", end=False) - 1)
    return first, last


class PolygonTicks:
    """Pages of one ticker's trades or quotes, in Massive's format."""

    def __init__(self, ticks: TickServer) -> None:
        self.ticks = ticks

    def page(
        self, parts: list[str], query: list[tuple[str, str]], now: dt.datetime, host: str
    ) -> tuple[dict[str, Any], int]:
        """The answer to one request, with ``next_url`` on ``host`` when there is more."""
        kind, ticker = parts[1], parts[2]
        params = with_carried(query)
        unexpected = sorted(set(params) - _PARAMS - {"position"})
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        order, sort = params.get("order", "desc"), params.get("sort", "timestamp")
        if order != "asc":
            raise BadRequest(f"order={order} is not served by the simulator; ask order=asc")
        if sort != "timestamp":
            raise BadRequest(f"sort={sort}: only timestamp is served by the simulator")
        limit = requested_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        first, last = _window(params)
        now_ns = int(now.timestamp()) * 10**9 + now.microsecond * 1000
        identity = "|".join(f"{name}={params.get(name, '')}" for name in sorted(_BOUNDS))
        request = TicksRequest(
            kind=kind,
            symbols=(ticker,),
            start_ns=first,
            end_ns=min(last, now_ns),
            limit=limit,
            feed="sip",
            asof=None,  # as traded: Massive maps no renames
            digest=hashlib.sha256(f"{kind}|{ticker}|{identity}".encode()).hexdigest()[:10],
        )
        position = _position(params.get("position"), request)
        encode = self._encode_trades if kind == "trades" else self._encode_quotes
        groups, resume = self.ticks.collect(request, position, now.timestamp(), encode)
        rows = groups.get(ticker, [])
        request_id = hashlib.sha256(f"{parts}{sorted(query)}".encode()).hexdigest()[:32]
        payload: dict[str, Any] = {"results": json_list(rows), "status": "OK"}
        payload["request_id"] = request_id
        if resume is not None:
            position = "|".join([*map(str, resume), request.digest])
            state = {**params, "position": position}
            payload["next_url"] = next_url(host, f"/v3/{kind}/{ticker}", state)
        return payload, len(rows)

    def _encode_trades(
        self, request: TicksRequest, key: str, bar: Bar, tape: str, minute: int
    ) -> list[bytes]:
        prints, inside = self.ticks.minute_prints(request, key, bar)
        assert isinstance(prints, MinuteTrades)
        chosen = np.flatnonzero(inside).tolist()
        times, prices, sizes = prints.times.tolist(), prints.prices.tolist(), prints.sizes.tolist()
        ids, base = prints.ids.tolist(), minute * _SEQUENCE_PER_MINUTE
        encoded = []
        for index in chosen:
            item: dict[str, Any] = {}
            codes = [CONDITION_IDS[c] for c in prints.conditions[index] if c in CONDITION_IDS]
            if codes:
                item["conditions"] = codes
            item |= {
                "exchange": EXCHANGE_IDS[prints.exchanges[index]],
                "id": str(ids[index]),
                "participant_timestamp": times[index] - _LATENCY_NS - (ids[index] % 997) * 100,
                "price": prices[index],
                "sequence_number": base + index,
                "sip_timestamp": times[index],
                "size": sizes[index],
                "tape": TAPE_IDS[tape],
            }
            encoded.append(orjson.dumps(item))
        return encoded

    def _encode_quotes(
        self, request: TicksRequest, key: str, bar: Bar, tape: str, minute: int
    ) -> list[bytes]:
        quotes, inside = self.ticks.minute_prints(request, key, bar)
        assert not isinstance(quotes, MinuteTrades)
        base = minute * _SEQUENCE_PER_MINUTE
        times = quotes.times.tolist()
        columns = (
            quotes.ask_prices.tolist(),
            quotes.ask_sizes.tolist(),
            quotes.bid_prices.tolist(),
            quotes.bid_sizes.tolist(),
        )
        encoded = []
        for index in np.flatnonzero(inside).tolist():
            ask_price, ask_size, bid_price, bid_size = (column[index] for column in columns)
            item = {
                "ask_exchange": EXCHANGE_IDS[quotes.ask_exchanges[index]],
                "ask_price": ask_price,
                "ask_size": ask_size,
                "bid_exchange": EXCHANGE_IDS[quotes.bid_exchanges[index]],
                "bid_price": bid_price,
                "bid_size": bid_size,
                "participant_timestamp": times[index] - _LATENCY_NS - (index % 997) * 100,
                "sequence_number": base + index,
                "sip_timestamp": times[index],
                "tape": TAPE_IDS[tape],
            }
            encoded.append(orjson.dumps(item))
        return encoded


def _position(text: str | None, request: TicksRequest) -> Position:
    """Where the page starts: the cursor's position, or the ticker's first print."""
    if not text:
        return (request.symbols[0], dt.date.min, 0, 0)
    try:
        symbol, day, minute, index, digest = text.split("|")
        position = (symbol, dt.date.fromisoformat(day), int(minute), int(index))
    except ValueError:
        raise BadRequest("invalid cursor") from None
    if digest != request.digest or symbol not in request.symbols:
        raise BadRequest("invalid cursor: it belongs to a different query")
    return position
