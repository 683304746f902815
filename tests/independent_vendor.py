"""A second, independent model of the two vendors' securities behaviour, written from their
documentation (not from MarketPipe's simulator), to check MarketPipe against: FB became META
on 2022-06-09 (Alpaca's example) and Twitter's last session was 2022-10-27.

Alpaca (docs): bars take ``asof`` (default: today) to find the entity of a symbol; its whole
history comes back under the symbol asked for when the range spans the name change; a symbol
not found on ``asof`` is not mapped. Corporate actions list ``name_changes`` and
``cash_mergers``; ``/v2/assets/{symbol}`` answers with ``status``. Polygon/Massive (docs):
aggregates per ticker as traded; ticker details as of ``date`` (404 when nobody traded it),
``/v3/reference/tickers?ticker=&active=false`` and ``/vX/reference/tickers/{id}/events``.
Daily bars only; a bar's close is a function of the entity and the day.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TODAY = dt.date(2026, 12, 1)
RENAME = dt.date(2022, 6, 9)
TWITTER_LAST = dt.date(2022, 10, 27)
ENTITIES: dict[str, dict[str, Any]] = {
    "facebook": {
        "name": "Meta Platforms, Inc.",
        "figi": "BBG000MM2P62",
        "asset": "fc6a5dcd-4a70-4b8d-b64f-d83a6dae9ba4",
        "listed": dt.date(2012, 5, 18),
        "tickers": [(dt.date(2012, 5, 18), "FB"), (RENAME, "META")],
        "last": None,
    },
    "twitter": {
        "name": "Twitter, Inc.",
        "figi": "BBG000H6HNW3",
        "asset": "0d8ec4b3-7a2c-4c6b-8e9c-3f1c7c6d52a1",
        "listed": dt.date(2013, 11, 7),
        "tickers": [(dt.date(2013, 11, 7), "TWTR")],
        "last": TWITTER_LAST,
    },
}


def _ticker_on(entity: dict[str, Any], day: dt.date) -> str | None:
    used = [ticker for start, ticker in entity["tickers"] if start <= day]
    return used[-1] if used else None


def _trades(entity: dict[str, Any], day: dt.date) -> bool:
    last = entity["last"]
    return entity["listed"] <= day and (last is None or day <= last) and day.weekday() < 5


def _holder(ticker: str, day: dt.date) -> str | None:
    for key, entity in ENTITIES.items():
        if _trades(entity, day) and _ticker_on(entity, day) == ticker:
            return key
    return None


def _bar(key: str, day: dt.date) -> dict[str, Any]:
    close = 100 + zlib.crc32(f"{key}{day}".encode()) % 1000 / 100
    stamp = f"{day.isoformat()}T04:00:00Z"
    return {"t": stamp, "o": close, "h": close + 1, "l": close - 1, "c": close, "v": 1000}


def _days(start: str, end: str) -> list[dt.date]:
    first, last = dt.date.fromisoformat(start[:10]), dt.date.fromisoformat(end[:10])
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        path = [part for part in parts.path.split("/") if part]
        status, body = 200, None
        if path == ["v2", "stocks", "bars"]:
            body = self._alpaca_bars(query)
        elif path[:2] == ["v2", "assets"] and len(path) == 3:
            body = self._asset(path[2])
        elif path == ["v2", "assets"]:
            assets = [self._asset(entity["asset"]) for entity in ENTITIES.values()]
            body = [a for a in assets if a and query.get("status") in (None, a["status"])]
        elif path == ["v1", "corporate-actions"]:
            body = self._actions(query)
        elif path[:3] == ["v2", "aggs", "ticker"]:
            body = self._aggs(path[3], path[7], path[8])
        elif path[:3] == ["v3", "reference", "tickers"] and len(path) == 4:
            body = self._details(path[3], query.get("date"))
        elif path == ["v3", "reference", "tickers"]:
            body = self._delisted(query.get("ticker", ""))
        elif path[:3] == ["vX", "reference", "tickers"] and path[4:] == ["events"]:
            body = self._events(path[3])
        if body is None:
            status, body = 404, {"status": "NOT_FOUND", "message": "not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _alpaca_bars(self, query: dict[str, str]) -> dict[str, Any]:
        asof_text = query.get("asof")
        asof = TODAY if asof_text is None else dt.date.fromisoformat(asof_text)
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol in query["symbols"].split(","):
            # Alpaca learns a rename overnight: the entity a symbol names on asof's eve.
            entity = _holder(symbol, asof - dt.timedelta(days=1)) if asof_text != "-" else None
            found = [
                _bar(key, day)
                for day in _days(query["start"], query["end"])
                if (key := entity or _holder(symbol, day)) is not None
                and _trades(ENTITIES[key], day)
            ]
            if found:
                bars[symbol] = found
        return {"bars": bars, "next_page_token": None}

    def _asset(self, identifier: str) -> dict[str, Any] | None:
        for entity in ENTITIES.values():
            current = _ticker_on(entity, TODAY)
            if identifier in (entity["asset"], current):
                active = entity["last"] is None
                return {
                    "id": entity["asset"],
                    "symbol": current,
                    "name": entity["name"],
                    "status": "active" if active else "inactive",
                }
        return None

    def _actions(self, query: dict[str, str]) -> dict[str, Any]:
        symbols = set(query.get("symbols", "").split(","))
        body: dict[str, Any] = {"corporate_actions": {}, "next_page_token": None}
        if symbols & {"FB", "META"}:
            body["corporate_actions"]["name_changes"] = [
                {
                    "id": "nc-fb-meta",
                    "old_symbol": "FB",
                    "new_symbol": "META",
                    "old_cusip": "30303M102",
                    "new_cusip": "30303M102",
                    "process_date": RENAME.isoformat(),
                }
            ]
        if "TWTR" in symbols:
            effective = (TWITTER_LAST + dt.timedelta(days=1)).isoformat()
            body["corporate_actions"]["cash_mergers"] = [
                {
                    "id": "cm-twtr",
                    "acquirer_symbol": None,
                    "acquiree_symbol": "TWTR",
                    "rate": 54.2,
                    "effective_date": effective,
                    "process_date": effective,
                }
            ]
        return body

    def _aggs(self, ticker: str, start_ms: str, end_ms: str) -> dict[str, Any]:
        first = dt.datetime.fromtimestamp(int(start_ms) / 1000, dt.UTC).date()
        last = dt.datetime.fromtimestamp(int(end_ms) / 1000, dt.UTC).date()
        results = []
        for day in _days(first.isoformat(), last.isoformat()):
            key = _holder(ticker, day)
            if key is not None:
                bar = _bar(key, day)
                stamp = dt.datetime.fromisoformat(bar["t"].replace("Z", "+00:00"))
                results.append({**bar, "t": int(stamp.timestamp() * 1000)})
        return {"ticker": ticker, "status": "OK", "resultsCount": len(results), "results": results}

    def _details(self, ticker: str, date: str | None) -> dict[str, Any] | None:
        day = dt.date.fromisoformat(date) if date else TODAY
        key = _holder(ticker, day)
        if key is None:
            return None
        return {"status": "OK", "results": self._listing(key)}

    def _listing(self, key: str) -> dict[str, Any]:
        entity = ENTITIES[key]
        listing = {
            "ticker": _ticker_on(entity, TODAY),
            "name": entity["name"],
            "composite_figi": entity["figi"],
            "list_date": entity["listed"].isoformat(),
            "active": entity["last"] is None,
        }
        if entity["last"] is not None:
            listing["delisted_utc"] = f"{entity['last'] + dt.timedelta(days=1)}T05:00:00Z"
        return listing

    def _delisted(self, ticker: str) -> dict[str, Any]:
        results = [
            self._listing(key)
            for key, entity in ENTITIES.items()
            if entity["last"] is not None and _ticker_on(entity, entity["last"]) == ticker
        ]
        return {"status": "OK", "results": results}

    def _events(self, identifier: str) -> dict[str, Any] | None:
        for entity in ENTITIES.values():
            tickers = [ticker for _, ticker in entity["tickers"]]
            if identifier == entity["figi"] or identifier in tickers:
                events = [
                    {
                        "type": "ticker_change",
                        "date": start.isoformat(),
                        "ticker_change": {"ticker": t},
                    }
                    for start, t in reversed(entity["tickers"])
                ]
                return {
                    "status": "OK",
                    "results": {
                        "name": entity["name"],
                        "composite_figi": entity["figi"],
                        "events": events,
                    },
                }
        return None


class IndependentVendor:
    """The model above on 127.0.0.1 (a port the OS picks), stopped on exit."""

    def __enter__(self) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
