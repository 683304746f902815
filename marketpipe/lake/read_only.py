"""The state of a lake this user can read but not write (a shared lake, a read-only mount).

Reading commands (``status``, ``plan``, ``verify``, ``export``, ``reconcile``) need the lake's
ledger, and SQLite cannot open a database in WAL mode from a directory it cannot write. So
they read a copy: the ledger (with its write-ahead log) and the last run's summary, copied
into the user's cache each time they changed. Nothing is ever written to the lake itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from marketpipe.lake.ledger import STATE_DIR, STATE_FILE
from marketpipe.markettime.calendar import calendar_cache_dir
from marketpipe.observability.summary import LATEST, RUNS_DIR

# What reading commands use of a lake's state (the shared-memory index is rebuilt).
_COPIED = (
    Path(STATE_DIR) / STATE_FILE,
    Path(STATE_DIR) / f"{STATE_FILE}-wal",
    Path(RUNS_DIR) / LATEST,
)


def read_only_state_dir(lake: Path) -> Path:
    """Where the copy of ``lake``'s state lives: ``<cache>/read-only/<lake's path hash>``
    (``$MARKETPIPE_CACHE_DIR``, else ``~/.cache/marketpipe``)."""
    key = hashlib.sha256(str(Path(lake).resolve()).encode()).hexdigest()[:16]
    return calendar_cache_dir() / "read-only" / key


def snapshot_state(lake: Path, copy: Path) -> Path:
    """Copy ``lake``'s ledger and last run summary into ``copy`` where the lake's are newer
    or differ in size (a file the lake no longer has is removed from the copy); ``copy``."""
    for relative in _COPIED:
        source, target = Path(lake) / relative, copy / relative
        if not source.exists():
            target.unlink(missing_ok=True)
            continue
        if target.exists() and _same(source, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.copy2(source, partial)
        os.replace(partial, target)
    # The copy's index of the write-ahead log belongs to the old copy: SQLite rebuilds it.
    (copy / STATE_DIR / f"{STATE_FILE}-shm").unlink(missing_ok=True)
    return copy


def _same(source: Path, target: Path) -> bool:
    a, b = source.stat(), target.stat()
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns
