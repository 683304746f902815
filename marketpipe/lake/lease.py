"""One writer per S3 lake: a lease object taken with a conditional PUT and kept alive.

A local lake's run lock is a ``flock`` that dies with its holder. Controllers of an S3 lake
may run on different machines, so the lock lives in the bucket: ``_state/run.lock`` is
created with ``If-None-Match: *`` (exactly one of two controllers succeeds) and renewed
every ``renew_every`` seconds with ``If-Match`` on its ETag. A holder that dies stops
renewing; once the lease has been silent for ``stale_after`` seconds the next controller
takes it over, again conditionally, so of two controllers recovering at once one wins. A
holder that was a process of the same machine and is gone is stale at once, as a local
lock is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from marketpipe.lake.objects import S3Store

logger = logging.getLogger(__name__)

LEASE_KEY = "_state/run.lock"
RENEW_SECONDS = 20.0
STALE_AFTER_SECONDS = 120.0


class LeaseHeld(RuntimeError):
    """Another live controller holds the lake's lease; the message names it."""


class ObjectLease:
    """The lease of one S3 lake; ``acquire`` takes it (or raises :class:`LeaseHeld`)."""

    def __init__(
        self,
        store: S3Store,
        purpose: str = "run",
        *,
        clock: Callable[[], float] = time.time,
        renew_every: float = RENEW_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
        heartbeat: bool = True,
    ) -> None:
        """``heartbeat=False`` leaves renewing to the caller (:meth:`renew`), for tests."""
        self.store = store
        self.purpose = purpose
        self.clock = clock
        self.renew_every = renew_every
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.etag: str | None = None
        self.since = 0.0
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": self.since,
            "renewed": self.clock(),
        }
        return json.dumps(holder).encode()

    def acquire(self) -> None:
        """Take the lease, taking over one whose holder has been silent too long."""
        self.since = self.clock()
        etag = self.store.put_conditionally(LEASE_KEY, self._body())
        if etag is None:
            etag = self._take_over_if_stale()
        self.etag = etag
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, name="lake-lease", daemon=True)
            self._thread.start()

    def _take_over_if_stale(self) -> str:
        try:
            data, current = self.store.get_with_etag(LEASE_KEY)
        except FileNotFoundError:  # released meanwhile: try once more
            current = None
            data = b"{}"
        holder = _holder(data)
        silent = self.clock() - float(str(holder.get("renewed", 0.0)))
        if current is not None and silent < self.stale_after and not _died_here(holder):
            raise LeaseHeld(
                f"another run is in progress ({describe_holder(holder)}, heard from "
                f"{silent:.0f} s ago) on {self.store.uri}"
            )
        etag = self.store.put_conditionally(LEASE_KEY, self._body(), if_match=current)
        if etag is None:
            raise LeaseHeld(f"another run took the lease of {self.store.uri} first")
        if current is not None:
            logger.warning(
                "took over the lease of %s from %s, silent for %.0f s",
                self.store.uri,
                describe_holder(holder),
                silent,
                extra={"event": "lease.taken_over"},
            )
        return etag

    def renew(self) -> bool:
        """Refresh the lease; False (and :attr:`lost`) if another controller took it."""
        if self.etag is None or self.lost:
            return False
        etag = self.store.put_conditionally(LEASE_KEY, self._body(), if_match=self.etag)
        if etag is None:
            self.lost = True
            logger.error(
                "lost the lease of %s to another run", self.store.uri, extra={"event": "lease.lost"}
            )
            return False
        self.etag = etag
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.renew_every):
            if not self.renew():
                return

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.etag is not None and not self.lost:
            self.store.delete_if_match(LEASE_KEY, self.etag)
        self.etag = None


def _died_here(holder: dict[str, object]) -> bool:
    """Whether the holder was a process of this machine that no longer exists (then its
    lease is stale at once, as a local lock is)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(str(holder.get("pid"))), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def _holder(data: bytes) -> dict[str, object]:
    try:
        holder = json.loads(data or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, object]) -> str:
    """``pid 4242 on host, marketpipe update``, as the lease records it."""
    if not holder:
        return "an unknown holder"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, {holder.get('purpose')}"
