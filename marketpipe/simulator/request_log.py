"""Every request the simulator served, in memory and optionally as JSON lines on disk."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

# Query parameters that could carry a credential are never written to the log.
_SECRET_PARAMS = frozenset({"apikey", "api_key", "token", "key", "secret"})


@dataclass(frozen=True)
class LoggedRequest:
    """One served request."""

    seq: int
    time: float  # arrival, epoch seconds
    path: str
    params: dict[str, str]
    status: int
    fault: str | None
    bars: int
    body_bytes: int
    key: str | None
    duration_ms: float

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the request asked for."""
        if self.path.count("/") == 4 and not self.path.endswith("/stocks/bars"):
            return (self.path.split("/")[3],)
        return tuple(s for s in self.params.get("symbols", "").split(",") if s)


class RequestLog:
    """Thread-safe record of served requests, with counters for tests and benchmarks."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._file = open(path, "ab", buffering=0) if path else None  # noqa: SIM115

    def record(
        self,
        *,
        path: str,
        params: Mapping[str, str],
        status: int,
        fault: str | None,
        bars: int,
        body_bytes: int,
        key: str | None,
        duration_ms: float,
        received_at: float | None = None,
    ) -> LoggedRequest:
        """Append one request (``received_at``: when it arrived, epoch seconds)."""
        safe_params = {k: v for k, v in params.items() if k.lower() not in _SECRET_PARAMS}
        with self._lock:
            entry = LoggedRequest(
                seq=len(self._entries) + 1,
                time=received_at if received_at is not None else time.time(),
                path=path,
                params=safe_params,
                status=status,
                fault=fault,
                bars=bars,
                body_bytes=body_bytes,
                key=key,
                duration_ms=round(duration_ms, 3),
            )
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(orjson.dumps(asdict(entry)) + b"\n")
        return entry

    @property
    def entries(self) -> list[LoggedRequest]:
        """A snapshot of all requests so far."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget the requests recorded so far (the file, if any, is kept)."""
        with self._lock:
            self._entries.clear()

    def counts(self) -> dict[str, Any]:
        """Totals by status and by fault kind."""
        entries = self.entries
        return {
            "requests": len(entries),
            "by_status": dict(collections.Counter(entry.status for entry in entries)),
            "by_fault": dict(collections.Counter(entry.fault for entry in entries if entry.fault)),
            "bars": sum(entry.bars for entry in entries),
        }

    def close(self) -> None:
        """Close the log file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def read_request_log(path: Path) -> list[LoggedRequest]:
    """Load a JSON-lines request log written by a simulator process."""
    with open(path, "rb") as handle:
        return [LoggedRequest(**orjson.loads(line)) for line in handle if line.strip()]
