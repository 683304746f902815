"""The simulator's HTTP server: a real loopback socket, embeddable in tests and scripts."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, unquote, urlsplit

from marketpipe.foundation.network import is_loopback_host
from marketpipe.markettime.clock import now as market_now
from marketpipe.simulator.api import Reply, SimulatorApp, SimulatorConfig
from marketpipe.simulator.request_log import RequestLog

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this, headers and body leave in two packets and Nagle + delayed ACK stall
    # every request by ~40 ms against requests/urllib3.
    disable_nagle_algorithm = True
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        reply = self.server.app.handle(unquote(url.path), query, self.headers)
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        faults = self.server.app.config.faults
        if reply.wire_fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if reply.wire_fault == "timeout":
            self.server.stopping.wait(faults.timeout_seconds)
            self.close_connection = True
            return
        if reply.wire_fault == "slow":
            self.server.stopping.wait(faults.slow_seconds)
        head = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Date": self.date_time_string(),
            **reply.headers,
            "Content-Length": str(len(reply.body)),
        }
        head += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if reply.wire_fault == "truncate":
            self.wfile.write(data + reply.body[: len(reply.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(data + reply.body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug(format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SimulatorApp) -> None:
        self.app = app
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that time out or hang up mid-response are routine under fault injection.
        logger.debug("connection from %s ended abruptly", client_address, exc_info=True)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class SimulatorServer:
    """An Alpaca-compatible market data server on loopback.

    Use as a context manager; ``port=0`` lets the OS choose a free port::

        with SimulatorServer(SimulatorConfig(seed=7)) as server:
            client = AlpacaClient(AlpacaConfig(base_url=server.url, key_id="demo", ...))
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        market_clock: Callable[[], dt.datetime] = market_now,
        log_path: Path | None = None,
    ) -> None:
        if not is_loopback_host(host):
            raise ValueError(f"host {host!r} is not a loopback address; the simulator is local")
        self.app = SimulatorApp(
            config, clock=clock, market_clock=market_clock, request_log=RequestLog(log_path)
        )
        self._address = (host, port)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SimulatorConfig:
        """The simulator's behaviour settings."""
        return self.app.config

    @property
    def request_log(self) -> RequestLog:
        """Every request served so far."""
        return self.app.log

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to give a client, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self._address[0]}:{self.port}"

    def start(self) -> SimulatorServer:
        """Bind and serve in a background thread."""
        self._httpd = _HttpServer(self._address, self.app)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="marketpipe-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the socket."""
        if self._httpd is None:
            return
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.app.log.close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
