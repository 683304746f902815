"""Seeded fault injection: which request gets which fault is a pure function of the seed.

A fault is decided from (seed, request identity, how often that identity was seen), so
the same run sees the same faults however its requests interleave across threads.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# HTTP-level faults answer with a status; wire-level faults misbehave on the socket.
STATUS_FAULTS = {
    "429": 429,
    "429_retry_after": 429,
    "429_reset": 429,
    "500": 500,
    "502": 502,
    "503": 503,
    "504": 504,
}
WIRE_FAULTS = ("reset", "timeout", "slow", "truncate", "invalid_json")
# A well-formed JSON page of the vendor's shape whose bar lacks its close: not retried.
BODY_FAULTS = ("malformed",)
FAULT_KINDS = (*STATUS_FAULTS, *WIRE_FAULTS, *BODY_FAULTS)


@dataclass
class FaultConfig:
    """Which faults to serve, and their parameters.

    ``rates``: per-request probabilities (0..1 each, summing to at most 1), drawn from
    ``seed``. ``sequence``: the first ``len(sequence)`` occurrences of every distinct
    request get these faults in order, for exact retry counts. ``fail_symbols``: every
    request naming the symbol gets that HTTP status.
    """

    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    retry_after_seconds: int = 1
    reset_after_seconds: int = 1
    slow_seconds: float = 0.05
    timeout_seconds: float = 10.0  # a stall; far longer than any read timeout a test sets
    fail_symbols: dict[str, int] = field(default_factory=dict)
    sequence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = (set(self.rates) | set(self.sequence)) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; choose from {FAULT_KINDS}")
        bad = {kind: rate for kind, rate in self.rates.items() if not 0 <= rate <= 1}
        if bad or sum(self.rates.values()) > 1:
            raise ValueError(
                f"fault rates must each be in [0, 1] and sum to <= 1, got {self.rates}"
            )
        for symbol, status in self.fail_symbols.items():
            if not 400 <= status <= 599:
                raise ValueError(f"fail_symbols[{symbol}]: {status} is not an HTTP error status")


class FaultInjector:
    """Decides, per request, which fault (if any) to serve."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._seen: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def decide(self, identity: str, symbols: Iterable[str] = ()) -> str | None:
        """The fault for this request, or ``None`` to serve it normally."""
        for symbol in symbols:
            if symbol in self.config.fail_symbols:
                return f"fail_symbol:{symbol}"
        if not self.config.rates and not self.config.sequence:
            return None
        with self._lock:
            occurrence = self._seen[identity]
            self._seen[identity] += 1
        if occurrence < len(self.config.sequence):
            return self.config.sequence[occurrence]
        roll = random.Random(f"{self.config.seed}|{identity}|{occurrence}").random()
        cumulative = 0.0
        for kind in FAULT_KINDS:
            cumulative += self.config.rates.get(kind, 0.0)
            if roll < cumulative:
                return kind
        return None


def parse_assignments(
    pairs: Iterable[str], value_type: Callable[[str], Any], what: str
) -> Mapping[str, Any]:
    """Parse ``KEY=VALUE`` command-line pairs, naming the bad pair on error."""
    result: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            result[key] = value_type(value)
        except ValueError:
            raise ValueError(f"{what} {pair!r} must look like NAME=VALUE") from None
    return result
