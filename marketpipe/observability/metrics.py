"""Per-endpoint request metrics: collected per job, stored with the checkpoints, rolled up."""

from __future__ import annotations

import collections
import statistics
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    cut = statistics.quantiles(values, n=100, method="inclusive")
    return round(cut[round(fraction * 100) - 1], 3)


@dataclass
class EndpointStats:
    """Counters for one vendor endpoint."""

    requests: int = 0
    pages: int = 0
    rows: int = 0
    bytes: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    retry_wait_seconds: float = 0.0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def merge(self, other: EndpointStats) -> None:
        """Add ``other``'s counts to these."""
        self.requests += other.requests
        self.pages += other.pages
        self.rows += other.rows
        self.bytes += other.bytes
        self.statuses.update(other.statuses)
        self.retries.update(other.retries)
        self.errors.update(other.errors)
        self.retry_wait_seconds += other.retry_wait_seconds
        self.rate_limit_waits += other.rate_limit_waits
        self.rate_limit_wait_seconds += other.rate_limit_wait_seconds
        self.latencies_ms.extend(other.latencies_ms)

    def to_dict(self, *, with_latencies: bool = True) -> dict[str, Any]:
        """A JSON-ready view; ``with_latencies`` keeps the raw samples for later merging."""
        data: dict[str, Any] = {
            "requests": self.requests,
            "pages": self.pages,
            "rows": self.rows,
            "bytes": self.bytes,
            "statuses": dict(sorted(self.statuses.items())),
            "retries": dict(sorted(self.retries.items())),
            "retries_total": sum(self.retries.values()),
            "errors": dict(sorted(self.errors.items())),
            "errors_total": sum(self.errors.values()),
            "retry_wait_seconds": round(self.retry_wait_seconds, 3),
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_wait_seconds": round(self.rate_limit_wait_seconds, 3),
            "latency_ms": {
                "p50": _percentile(self.latencies_ms, 0.50),
                "p95": _percentile(self.latencies_ms, 0.95),
                "max": round(max(self.latencies_ms), 3) if self.latencies_ms else None,
            },
        }
        if with_latencies:
            data["latency_samples_ms"] = [round(value, 3) for value in self.latencies_ms]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointStats:
        """Rebuild from :meth:`to_dict` output (with latencies)."""
        return cls(
            requests=data["requests"],
            pages=data["pages"],
            rows=data["rows"],
            bytes=data["bytes"],
            statuses=collections.Counter(data["statuses"]),
            retries=collections.Counter(data["retries"]),
            errors=collections.Counter(data["errors"]),
            retry_wait_seconds=data["retry_wait_seconds"],
            rate_limit_waits=data["rate_limit_waits"],
            rate_limit_wait_seconds=data["rate_limit_wait_seconds"],
            latencies_ms=list(data.get("latency_samples_ms", [])),
        )


class MetricsRecorder:
    """Thread-safe collector the transport and clients report into."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, EndpointStats] = collections.defaultdict(EndpointStats)

    def _update(self, vendor: str, endpoint: str) -> EndpointStats:
        return self._stats[f"{vendor}:{endpoint}"]

    def attempt(
        self, vendor: str, endpoint: str, status: int | str, latency_ms: float, size: int
    ) -> None:
        """One HTTP exchange ended with ``status`` (a code, or a failure kind)."""
        with self._lock:
            stats = self._update(vendor, endpoint)
            stats.requests += 1
            stats.statuses[str(status)] += 1
            stats.bytes += size
            stats.latencies_ms.append(latency_ms)

    def retry(self, vendor: str, endpoint: str, cause: str, delay: float) -> None:
        """A failed attempt will be retried after ``delay`` seconds."""
        with self._lock:
            stats = self._update(vendor, endpoint)
            stats.retries[cause] += 1
            stats.retry_wait_seconds += delay

    def rate_limit_wait(self, vendor: str, endpoint: str, seconds: float) -> None:
        """The rate limiter held a request back."""
        with self._lock:
            stats = self._update(vendor, endpoint)
            stats.rate_limit_waits += 1
            stats.rate_limit_wait_seconds += seconds

    def page(self, vendor: str, endpoint: str, rows: int) -> None:
        """A page was parsed into ``rows`` rows."""
        with self._lock:
            stats = self._update(vendor, endpoint)
            stats.pages += 1
            stats.rows += rows

    def error(self, vendor: str, endpoint: str, kind: str) -> None:
        """A request failed for good."""
        with self._lock:
            self._update(vendor, endpoint).errors[kind] += 1

    def snapshot(self) -> dict[str, EndpointStats]:
        """A copy of the counters, by ``vendor:endpoint``."""
        with self._lock:
            copies = {}
            for key, stats in self._stats.items():
                copy = EndpointStats()
                copy.merge(stats)
                copies[key] = copy
            return copies


def merge_endpoint_stats(parts: Iterable[dict[str, EndpointStats]]) -> dict[str, EndpointStats]:
    """Sum several jobs' metrics, endpoint by endpoint."""
    total: dict[str, EndpointStats] = collections.defaultdict(EndpointStats)
    for part in parts:
        for key, stats in part.items():
            total[key].merge(stats)
    return dict(sorted(total.items()))
