"""Fencing: a run that no longer holds its lake's lease writes nothing more to the lake.

An S3 lake's lease (:mod:`marketpipe.lake.lease`) registers here while it is held; every
object write and every ledger commit about the lake's contents calls :func:`check_fence`
first, which raises :class:`LeaseLost` once the lease is lost or has expired by this
process's own clock (a paused or partitioned controller included), and otherwise says how
long the lease still holds: S3 writes are signed to expire by then, so a write that a pause
delayed past the check is refused by the server itself. A local lake's lock is a
``flock`` that cannot be lost while its holder lives, so nothing registers for it.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

LEASE_KEY = "_state/run.lock"  # the lease object of an S3 lake (not fenced: it is the fence)


class LeaseLost(RuntimeError):
    """This run no longer holds the lake's lease, so it stopped writing; the message says why."""


class Fence(Protocol):
    """What a held lease offers the writers."""

    def check(self, action: str) -> None:
        """Raise :class:`LeaseLost` unless the lease is still certainly ours."""

    def valid_for(self) -> float:
        """Seconds this process may still write under the lease (0 once lost or expired)."""


_fences: list[tuple[str, Fence]] = []  # (the lake's URI, its lease)
_lock = threading.Lock()


def register(lake: str, fence: Fence) -> None:
    """Guard every later write to ``lake`` (its URI) with ``fence``."""
    with _lock:
        _fences.append((lake, fence))


def unregister(fence: Fence) -> None:
    """Stop guarding writes with ``fence`` (its lease was released)."""
    with _lock:
        _fences[:] = [(lake, held) for lake, held in _fences if held is not fence]


def check_fence(action: str, lake: str | None = None) -> float:
    """Raise :class:`LeaseLost` if a lease this process holds (of ``lake``, or of any lake)
    is lost; ``action`` names the write that is refused. Else the seconds the writes may
    still take (infinite when no lease guards the lake)."""
    with _lock:
        fences = [fence for uri, fence in _fences if lake is None or uri == lake]
    for fence in fences:
        fence.check(action)
    return min((fence.valid_for() for fence in fences), default=math.inf)
