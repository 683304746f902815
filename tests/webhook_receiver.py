"""A local webhook receiver on loopback that records what it is sent, for alert tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import serve_on_loopback


class Receiver:
    """What arrived; ``mode`` is ``ok`` (204), ``fail`` (500), ``hang`` (never answers) or
    ``gate`` (answers 204 once ``release`` is set)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.url = ""


@contextmanager
def webhook_receiver(mode: str = "ok", token: str = "T0KEN") -> Iterator[Receiver]:
    """Serve on an OS-chosen port; the URL carries ``token`` in its path, as Slack's do."""
    receiver = Receiver(mode)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            receiver.paths.append(self.path)
            receiver.bodies.append(json.loads(self.rfile.read(length)))
            receiver.arrived.set()
            if receiver.mode == "gate":
                receiver.release.wait(60)
            if receiver.mode == "hang":
                receiver.stopping.wait(60)
                self.close_connection = True
                return
            self.send_response(500 if receiver.mode == "fail" else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve_on_loopback(Handler) as base_url:
        receiver.url = f"{base_url}/services/{token}"
        try:
            yield receiver
        finally:  # let handlers waiting at a gate or hanging return before the server stops
            receiver.stopping.set()
            receiver.release.set()
