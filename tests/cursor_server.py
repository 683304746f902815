"""A tiny scripted cursor-paginated JSON API on loopback, for testing BaseApiClient."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tests.loopback import serve_on_loopback


class ScriptedPages:
    """Pages keyed by cursor (``None`` = first page); records every cursor requested."""

    def __init__(self, pages: dict[str | None, dict[str, Any]]) -> None:
        self.pages = pages
        self.requested: list[str | None] = []
        self._arrived = threading.Condition()

    def record(self, cursor: str | None) -> None:
        """Note that ``cursor`` was requested and wake anyone waiting for it."""
        with self._arrived:
            self.requested.append(cursor)
            self._arrived.notify_all()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[str | None]:
        """Block until ``count`` requests arrived (a safety timeout, not a pacing sleep)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requested) >= count, timeout):
                raise AssertionError(f"only {self.requested} arrived; expected {count} requests")
            return list(self.requested)


@contextmanager
def cursor_api(script: ScriptedPages) -> Iterator[str]:
    """Serve ``script`` at ``/items?cursor=...``; yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            cursor = query.get("cursor", [None])[0]
            script.record(cursor)
            body = orjson.dumps(script.pages[cursor])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve_on_loopback(Handler) as url:
        yield url
