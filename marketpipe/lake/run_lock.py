"""One writer per lake: an advisory lock that dies with the process holding it.

``data_dir/_state/run.lock`` is locked with ``flock``, which the kernel releases when the
holding process ends, however it ends (``kill -9``, OOM, power loss). So a lock that cannot
be taken belongs to a live run, and one that can be taken proves that no run of this lake is
alive: whatever Snakemake left behind is stale. The file also names the holder (pid, host,
since when) for the "another run is in progress" message. An S3 lake is also guarded across
machines by a lease object in its bucket (:mod:`marketpipe.lake.lease`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from marketpipe.lake.job_fence import TOKEN_VARIABLE
from marketpipe.lake.lease import RENEW_SECONDS, STALE_AFTER_SECONDS, LeaseHeld, ObjectLease
from marketpipe.lake.objects import LakeStore, S3Store
from marketpipe.markettime import clock

LOCK_FILE = "run.lock"
OBSERVATIONS_FILE = "lease-observed.json"  # when this machine first saw an S3 lease

_held: dict[Path, int] = {}  # lock files this process holds, with their descriptors


class RunInProgress(RuntimeError):
    """Another live process is writing this lake; the message names it.

    ``held_seconds`` is how long the holder has had the lake, when it says so.
    """

    def __init__(self, message: str, held_seconds: float | None = None) -> None:
        super().__init__(message)
        self.held_seconds = held_seconds


def run_lock_path(state_dir: Path | str) -> Path:
    """Where the run lock of a lake lives."""
    return Path(state_dir) / "_state" / LOCK_FILE


class RunLock:
    """The run lock of one lake, taken without waiting; use as a context manager."""

    def __init__(
        self,
        state_dir: Path | str,
        purpose: str = "run",
        lake: LakeStore | None = None,
        *,
        renew_every: float = RENEW_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        """``state_dir`` holds the local lock; an S3 ``lake`` adds its lease object, renewed
        every ``renew_every`` seconds and abandoned after ``stale_after`` of silence."""
        self.path = run_lock_path(state_dir).resolve()
        self.purpose = purpose
        self._descriptor: int | None = None
        self._lease = (
            ObjectLease(
                lake,
                purpose,
                renew_every=renew_every,
                stale_after=stale_after,
                observations=self.path.parent / OBSERVATIONS_FILE,
            )
            if isinstance(lake, S3Store)
            else None
        )

    @property
    def held_here(self) -> bool:
        """Whether this process already holds the lake's lock (a run inside ``update``)."""
        return self.path in _held

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunInProgress` naming the live holder."""
        if self.held_here:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, held = _describe(self.path)
            os.close(descriptor)
            lake = self.path.parent.parent
            raise RunInProgress(f"another run is in progress ({holder}) on {lake}", held) from None
        except BaseException:
            os.close(descriptor)
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": clock.now().isoformat(timespec="seconds"),
            "started": time.time(),  # this machine's clock, for how long the lake is held
            "purpose": self.purpose,
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        if self._lease is not None:
            try:
                self._lease.acquire()
            except LeaseHeld as held:
                os.close(descriptor)
                raise RunInProgress(str(held), held.held_seconds) from None
        self._descriptor = descriptor
        _held[self.path] = descriptor
        if self._lease is not None:  # the jobs this run starts fence their writes with it
            os.environ[TOKEN_VARIABLE] = self._lease.token

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases the flock)."""
        if self._descriptor is None:
            return
        if self._lease is not None:
            self._lease.release()
            os.environ.pop(TOKEN_VARIABLE, None)
        _held.pop(self.path, None)
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _describe(path: Path) -> tuple[str, float | None]:
    """``pid 4242 on host, marketpipe update since 2026-11-24T21:30:00+00:00``, as recorded,
    and how many seconds the holder has had the lock (None when it did not record it)."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return "its holder has not recorded itself yet", None
    started = holder.get("started")
    held = time.time() - float(started) if isinstance(started, int | float) else None
    description = (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"{holder.get('purpose', 'run')} since {holder.get('since', '?')}"
    )
    return description, held
