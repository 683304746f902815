"""Polygon.io / Massive ticker details: ``GET /v3/reference/tickers/{ticker}``.

Whether a ticker exists, and from when: ``results`` with ``active``, ``list_date`` and the
composite FIGI for a ticker the market lists; ``404 {"status": "NOT_FOUND", ...}`` for one it
does not (or, with ``date=``, not yet). The simulator lists every well-formed ticker except
its configured unknown symbols, from its configured listing date (else long before any range).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from marketpipe.simulator.wire import BadRequest

PATH_PREFIX = ("v3", "reference", "tickers")
NOT_FOUND_MESSAGE = "Ticker not found."
LISTED_SINCE = dt.date(1990, 1, 2)  # the listing date of tickers without a configured one
_FIGI_ALPHABET = "BCDFGHJKLMNPQRSTVWXYZ0123456789"


def is_reference_path(parts: list[str]) -> bool:
    """Whether a request path asks for one ticker's details."""
    return len(parts) == 4 and tuple(parts[:3]) == PATH_PREFIX


def _figi(ticker: str, kind: str) -> str:
    """A stable, FIGI-shaped id (``BBG`` and nine characters) for a simulated security."""
    digest = hashlib.sha256(f"{kind}|{ticker}".encode()).digest()
    return "BBG" + "".join(_FIGI_ALPHABET[byte % len(_FIGI_ALPHABET)] for byte in digest[:9])


def ticker_details(
    ticker: str,
    query: list[tuple[str, str]],
    listings: dict[str, dt.date],
    unknown: frozenset[str],
    request_id: str,
) -> dict[str, Any]:
    """The ticker's details as of ``date`` (default: today), or a 404 :class:`BadRequest`."""
    params = dict(query)
    unexpected = sorted(set(params) - {"date", "apiKey"})
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    listed = listings.get(ticker, LISTED_SINCE)
    asked = params.get("date")
    if asked is not None:
        try:
            on = dt.date.fromisoformat(asked)
        except ValueError:
            raise BadRequest(f"Could not parse the 'date' parameter: {asked!r}") from None
        if on < listed:
            raise BadRequest(NOT_FOUND_MESSAGE, status=404)
    if ticker in unknown or not ticker.replace(".", "").isalnum() or ticker != ticker.upper():
        raise BadRequest(NOT_FOUND_MESSAGE, status=404)
    results = {
        "ticker": ticker,
        "name": f"{ticker} Simulated Inc.",
        "market": "stocks",
        "locale": "us",
        "primary_exchange": "XNAS",
        "type": "CS",
        "active": True,
        "currency_name": "usd",
        "composite_figi": _figi(ticker, "composite"),
        "share_class_figi": _figi(ticker, "share_class"),
        "list_date": listed.isoformat(),
    }
    return {"results": results, "status": "OK", "request_id": request_id}
