"""One writer per S3 lake: a lease object taken with a conditional PUT, kept alive, fenced.

Controllers of an S3 lake may run on different machines, so the lock lives in the bucket:
``_state/run.lock`` is created with ``If-None-Match: *`` (one of two controllers wins) and
renewed every ``renew_every`` seconds with ``If-Match`` on its ETag.

- **Staleness without two machines' clocks.** A contender never compares its clock with the
  holder's: it remembers when *it* first saw the lease's current ETag (in its state
  directory, so a later attempt remembers too) and takes the lease over once that ETag has
  not changed for ``stale_after`` seconds of its own clock. A holder recorded as a process
  of this boot and pid namespace that is gone is stale at once, as a local lock is.
- **A heartbeat that survives hiccups.** A failed renewal is retried with back-off; only
  when no renewal succeeded for the lease's validity does the lease count as lost.
- **Its own writes recognised.** When a conditional PUT's answer is lost, boto3 sends it
  again and the retry meets the object the first attempt wrote (412). Every body this lease
  writes carries a token of its own, so a refused PUT whose object holds exactly the bytes
  just sent is this lease's own write, not another controller's.
- **Fencing.** The holder's lease is valid for ``stale_after`` minus a margin after the
  last renewal it *sent*, by this process's monotonic clock (which keeps running while the
  process is paused). Every write checks it (:mod:`marketpipe.lake.fencing`) and is signed
  to expire by then (:mod:`marketpipe.lake.s3_writes`): a paused, partitioned or slow
  controller stops writing before anyone may take over, and S3 refuses what was already
  past the check when the pause began.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marketpipe.foundation.files import write_atomically
from marketpipe.foundation.processes import died_here, process_identity
from marketpipe.lake import fencing
from marketpipe.lake.fencing import LEASE_KEY, LeaseLost
from marketpipe.lake.objects import S3Store

logger = logging.getLogger(__name__)

__all__ = ["LEASE_KEY", "LeaseHeld", "LeaseLost", "ObjectLease", "describe_holder"]

RENEW_SECONDS = 20.0
STALE_AFTER_SECONDS = 120.0
SAFETY_MARGIN = 0.1  # of stale_after: the holder stops writing this much before a takeover


class LeaseHeld(RuntimeError):
    """Another live controller holds the lake's lease; the message names it.

    ``held_seconds``: how long the holder has had it, by its own clock, when known.
    """

    def __init__(self, message: str, held_seconds: float | None = None) -> None:
        super().__init__(message)
        self.held_seconds = held_seconds


class ObjectLease:
    """The lease of one S3 lake; ``acquire`` takes it (or raises :class:`LeaseHeld`)."""

    def __init__(
        self,
        store: S3Store,
        purpose: str = "run",
        *,
        renew_every: float = RENEW_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
        observations: Path | None = None,
        heartbeat: bool = True,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """``observations``: the file remembering when this machine first saw a lease
        (default: in memory only). ``heartbeat=False`` leaves renewing to the caller
        (:meth:`renew`); ``clock``, ``monotonic`` and ``wait`` (the heartbeat's pause between
        retries, True when stopped) are injectable, for tests."""
        if not 0 < renew_every < stale_after / 2:
            raise ValueError("renew_every must be positive and below half of stale_after")
        self.store = store
        self.purpose = purpose
        self.renew_every = renew_every
        self.stale_after = stale_after
        self.observations = observations
        self.heartbeat = heartbeat
        self.clock = clock
        self.monotonic = monotonic
        self.etag: str | None = None
        self.lost: str | None = None  # why, once lost
        self._renewed_at = 0.0  # monotonic time the last successful renewal was sent
        self._since = 0.0
        self._seen: dict[str, float] = {}
        self._renewals = 0
        self._token = uuid.uuid4().hex  # in every body: this lease's own writes, recognised
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread: threading.Thread | None = None

    # -- taking the lease ------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease, taking over one that has been silent too long (see the module)."""
        self._since = self.clock()
        sent = self.monotonic()
        etag = self._put(None)
        if etag is None:
            sent = self.monotonic()
            etag = self._take_over_if_stale()
        self.etag, self._renewed_at, self.lost = etag, sent, None
        fencing.register(self.store.uri, self)
        if self.heartbeat:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="lake-lease", daemon=True)
            self._thread.start()

    def _take_over_if_stale(self) -> str:
        try:
            data, current = self.store.get_with_etag(LEASE_KEY)
        except FileNotFoundError:  # released meanwhile: try once more
            data, current = b"{}", None
        holder = _holder(data)
        if current is not None and not died_here(holder):
            silent = self.clock() - self._first_seen(current)
            if silent < self.stale_after:
                since = holder.get("since")
                held = self.clock() - float(since) if isinstance(since, int | float) else None
                raise LeaseHeld(
                    f"another run is in progress ({describe_holder(holder)}) on "
                    f"{self.store.uri}; unchanged for {silent:.0f} s as seen from here, it "
                    f"counts as abandoned after {self.stale_after:.0f} s",
                    held,
                )
        etag = self._put(current)
        if etag is None:
            raise LeaseHeld(f"another run took the lease of {self.store.uri} first")
        if current is not None:
            logger.warning(
                "took over the lease of %s from %s",
                self.store.uri,
                describe_holder(holder),
                extra={"event": "lease.taken_over"},
            )
        return etag

    def _first_seen(self, etag: str) -> float:
        """When this machine first saw the lease with ``etag`` (now, if never before)."""
        seen = dict(self._seen)
        if self.observations is not None:
            try:
                stored = json.loads(self.observations.read_text())
                if stored.get("lake") == self.store.uri:
                    seen.update({str(stored["etag"]): float(stored["first_seen"])})
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                pass
        if etag not in seen:
            seen = {etag: self.clock()}
            if self.observations is not None:
                record = {"lake": self.store.uri, "etag": etag, "first_seen": seen[etag]}
                write_atomically(self.observations, json.dumps(record).encode())
        self._seen = seen
        return seen[etag]

    def _body(self) -> bytes:
        # Every renewal changes the bytes, hence the ETag: that change is what others watch.
        self._renewals += 1
        holder = {
            **process_identity(),
            "purpose": self.purpose,
            "since": self._since,
            "renewal": self._renewals,
            "token": self._token,
        }
        return json.dumps(holder).encode()

    @property
    def token(self) -> str:
        """What every body of this lease carries (jobs of its run check for it)."""
        return self._token

    def _put(self, if_match: str | None) -> str | None:
        """Write a new body conditionally; its ETag, or None when another writer's object is
        in the way. A refusal met by exactly the bytes sent is this lease's own earlier try
        (its answer was lost and the client sent it again): it counts as written."""
        body = self._body()
        etag = self.store.put_conditionally(LEASE_KEY, body, if_match=if_match)
        if etag is not None:
            return etag
        try:
            data, current = self.store.get_with_etag(LEASE_KEY)
        except FileNotFoundError:
            return None
        if data != body:
            return None
        logger.info(
            "the lease of %s was written by this run's own retried request",
            self.store.uri,
            extra={"event": "lease.own_write"},
        )
        return current

    # -- keeping it ------------------------------------------------------------------------

    def renew(self) -> bool:
        """Refresh the lease; False (and :attr:`lost`) if another controller took it.
        Errors reaching the store propagate: the heartbeat retries them."""
        if self.etag is None or self.lost:
            return False
        sent = self.monotonic()
        etag = self._put(self.etag)
        if etag is None:
            self._lose("another run took it over")
            return False
        self.etag, self._renewed_at = etag, sent
        return True

    def valid_for(self) -> float:
        """Seconds this process may still write (0 when lost or expired)."""
        if self.lost or self.etag is None:
            return 0.0
        validity = self.stale_after * (1 - SAFETY_MARGIN)
        return max(0.0, validity - (self.monotonic() - self._renewed_at))

    def check(self, action: str) -> None:
        """Raise :class:`LeaseLost` unless the lease is still certainly ours (fencing)."""
        if self.lost is None and self.etag is not None and self.valid_for() <= 0:
            self._lose(f"no renewal succeeded for {self.stale_after * (1 - SAFETY_MARGIN):.0f} s")
        if self.lost is not None:
            raise LeaseLost(
                f"this run lost the lease of {self.store.uri} ({self.lost}) and stopped "
                f"before {action}; another controller may hold the lake now"
            )

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            logger.error(
                "lost the lease of %s: %s; this run writes nothing more",
                self.store.uri,
                reason,
                extra={"event": "lease.lost", "reason": reason},
            )

    def _beat(self) -> None:
        while not self._stop.wait(self.renew_every):
            if not self._renew_with_retries():
                return

    def _renew_with_retries(self) -> bool:
        """Renew; on errors retry with back-off while the lease is still valid."""
        delay = min(1.0, self.renew_every)
        while True:
            try:
                return self.renew()
            except Exception as exc:  # any error reaching the store: retry while valid
                remaining = self.valid_for()
                if remaining <= 0:
                    self._lose(f"could not renew it: {type(exc).__name__}")
                    return False
                logger.warning(
                    "renewing the lease of %s failed (%s); retrying",
                    self.store.uri,
                    type(exc).__name__,
                    extra={"event": "lease.renew_failed"},
                )
                if self._wait(min(delay, remaining)):
                    return False
                delay = min(delay * 2, self.renew_every)

    # -- letting go ------------------------------------------------------------------------

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        fencing.unregister(self)
        if self.etag is not None and not self.lost:
            try:
                self.store.delete_if_match(LEASE_KEY, self.etag)
            except Exception as exc:  # the lease goes stale by itself; say so, do not fail
                logger.warning(
                    "could not delete the lease of %s (%s); it goes stale by itself",
                    self.store.uri,
                    type(exc).__name__,
                    extra={"event": "lease.release_failed"},
                )
        self.etag = None


def _holder(data: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(data or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 4242 on host, marketpipe update``, as the lease records it."""
    if not holder:
        return "an unknown holder"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, {holder.get('purpose')}"
