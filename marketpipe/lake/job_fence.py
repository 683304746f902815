"""Fencing in a job process: a job's writes stop once its run's controller lost the lease.

On a cluster, fetch and news jobs run as processes of their own, on other machines, and
hold no lease: after another controller took the lake over, a job of the old run could go on
writing news and month files (and deleting month files) over the new holder's. So the
controller hands its lease's token to the jobs it starts (``$MARKETPIPE_LEASE_TOKEN``), and a
job registers a :class:`JobFence` for its writes: it reads the lease object, refuses to write
once the object carries another token (or is gone), and bounds each write by when the lease
could be taken over at the earliest: ``stale_after`` (less the safety margin) after the
object was last written, both times by the S3 server's own clock (its ``Date`` and the
object's ``Last-Modified``), so no two machines' clocks are compared. A controller that
keeps renewing moves that bound forward; one that is paused or gone does not.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from marketpipe.lake import fencing
from marketpipe.lake.fencing import LEASE_KEY, LeaseLost
from marketpipe.lake.lease import SAFETY_MARGIN, STALE_AFTER_SECONDS
from marketpipe.lake.s3_store import S3Store

TOKEN_VARIABLE = "MARKETPIPE_LEASE_TOKEN"


class JobFence:
    """The fence of a job process: valid while its run's controller holds the lease."""

    def __init__(
        self,
        store: S3Store,
        token: str,
        stale_after: float = STALE_AFTER_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.token = token
        self.validity = stale_after * (1 - SAFETY_MARGIN)
        self.monotonic = monotonic
        self.lost: str | None = None
        self._deadline = float("-inf")  # monotonic time the lease may be taken over from
        self._lock = threading.Lock()

    def _observe(self) -> None:
        """Read the lease object: whose it is, and how long ago it was last written."""
        asked = self.monotonic()
        try:
            data, age = self.store.get_with_age(LEASE_KEY)
        except FileNotFoundError:
            self.lost = "the lease is gone: the run ended, or another controller took over"
            return
        try:
            token = json.loads(data).get("token")
        except (ValueError, AttributeError):
            token = None
        if token != self.token:
            self.lost = "another controller holds the lake's lease now"
            return
        # One second less: Last-Modified has whole seconds.
        self._deadline = max(self._deadline, asked - age - 1 + self.validity)

    def valid_for(self) -> float:
        """Seconds this job may still write (0 once the lease is lost or may be)."""
        if self.lost is not None:
            return 0.0
        return max(0.0, self._deadline - self.monotonic())

    def check(self, action: str) -> None:
        """Raise :class:`LeaseLost` unless the run's controller still holds the lease; the
        lease object is read again once half its validity is used up."""
        with self._lock:
            if self.lost is None and self.valid_for() < self.validity / 2:
                self._observe()
            if self.lost is None and self.valid_for() <= 0:
                self.lost = "its controller has not renewed the lease in time"
            if self.lost is not None:
                raise LeaseLost(
                    f"this job's run no longer holds the lease of {self.store.uri} "
                    f"({self.lost}); the job stopped before {action}"
                )


def fence_this_job(store: S3Store, stale_after: float) -> JobFence | None:
    """Guard this job process's writes to ``store`` with the lease token its controller
    handed down (none handed down, e.g. a job run by hand: no fence)."""
    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        return None
    fence = JobFence(store, token, stale_after)
    fencing.register(store.uri, fence)
    return fence
