"""The simulator's replies that are not data: error bodies in each vendor's style, the proxy's
and gateways' HTML pages, and the answers to injected faults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from marketpipe.simulator.faults import STATUS_FAULTS, FaultConfig
from marketpipe.simulator.polygon_api import polygon_error
from marketpipe.simulator.wire import json_bytes


@dataclass
class Reply:
    """What to send back; ``wire_fault`` asks the server to misbehave on the socket."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    wire_fault: str | None = None


# A wrong or missing key never reaches the API: the proxy in front answers with its own page
# (recordings of the live API, reference alpaca-live-data.md section 8).
_NGINX_401_PAGE = (
    b"<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
    b"<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def polygon_reply(status: int, body: dict[str, Any]) -> Reply:
    """A Polygon JSON body, as its API sends it (a trailing newline)."""
    return Reply(status, json_bytes(body) + b"\n", {"Content-Type": "application/json"})


_BROKEN_ALPACA_PAGE = b'{"bars":{"AAPL":[{"t":"2024-01-02T'
_BROKEN_POLYGON_PAGE = b'{"ticker":"AAPL","results":[{"v":12'
_CLOSELESS_BAR = {"o": 185.1, "h": 185.3, "l": 185.0, "v": 1200}
_MALFORMED_ALPACA_PAGE = {
    "bars": {"AAPL": [{"t": "2024-01-02T14:30:00Z", **_CLOSELESS_BAR}]},
    "next_page_token": None,
}
_MALFORMED_NEWS_PAGE = {  # one article without its created_at, one valid
    "news": [
        {"id": 1, "headline": "No time given", "updated_at": "2024-01-02T15:00:00Z"},
        {
            "id": 2,
            "headline": "A valid article",
            "created_at": "2024-01-02T15:00:00Z",
            "updated_at": "2024-01-02T15:00:01Z",
            "symbols": ["AAPL"],
        },
    ],
    "next_page_token": None,
}
_MALFORMED_POLYGON_PAGE = {
    "ticker": "AAPL",
    "resultsCount": 1,
    "results": [{"t": 1_704_205_800_000, **_CLOSELESS_BAR}],
    "status": "OK",
}
_MALFORMED_PAGES = {
    "bars": _MALFORMED_ALPACA_PAGE,
    "news": _MALFORMED_NEWS_PAGE,
    "polygon": _MALFORMED_POLYGON_PAGE,
}
Endpoint = Literal["bars", "news", "polygon"]


def _gateway_page(status: int) -> bytes:
    title = {502: "502 Bad Gateway", 504: "504 Gateway Time-out"}[status]
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>".encode()


def nginx_401() -> Reply:
    """The proxy's page for a wrong or missing key."""
    return Reply(401, _NGINX_401_PAGE, {"Content-Type": "text/html"})


def error_reply(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    code: int | None = None,
) -> Reply:
    """Alpaca's error body: ``{"message": ...}``, with its ``code`` when it has one."""
    body = {"message": message} if code is None else {"code": code, "message": message}
    return Reply(status, json_bytes(body), dict(headers or {}))


def fault_reply(
    fault: str,
    limit_headers: dict[str, str],
    endpoint: Endpoint,
    faults: FaultConfig,
    now: float,
) -> Reply:
    """An injected failure, in the style of the endpoint asked (its vendor's error bodies,
    its own page shape for a malformed page); ``now`` is the rate-limit clock's time."""
    polygon = endpoint == "polygon"
    headers = dict(limit_headers)
    if fault.startswith("fail_symbol:"):
        symbol = fault.split(":", 1)[1]
        status, message = faults.fail_symbols[symbol], f"injected failure for {symbol}"
    elif fault in STATUS_FAULTS:
        status = STATUS_FAULTS[fault]
        if fault == "429_retry_after":
            headers["Retry-After"] = str(faults.retry_after_seconds)
        if fault == "429_reset":
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(math.ceil(now) + faults.reset_after_seconds)
        # Gateways answer with their own HTML page (Polygon's 504 too: reference section 1).
        if status == 502 or (polygon and status == 504):
            return Reply(status, _gateway_page(status), {**headers, "Content-Type": "text/html"})
        message = "too many requests." if status == 429 else "internal server error"
    elif fault == "invalid_json":
        return Reply(200, _BROKEN_POLYGON_PAGE if polygon else _BROKEN_ALPACA_PAGE, headers)
    elif fault == "malformed":
        page = _MALFORMED_PAGES[endpoint]
        return Reply(200, json_bytes(page), headers)
    else:  # socket-level faults: no body is ever read
        return Reply(200, b"{}", headers, fault)
    if not polygon:
        return error_reply(status, message, headers)
    reply = polygon_reply(*polygon_error(status, message))
    reply.headers.update(headers)
    return reply
