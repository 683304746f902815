"""Atomic file writes: readers see the old file or the new one, never a part of either."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from marketpipe.chaos import crash_point


def write_atomically(path: Path, data: bytes, crash_point_name: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the new file.

    The bytes go to a temporary file beside the target, are fsynced, and are renamed over
    the target; the directory is fsynced so the rename survives a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if crash_point_name:
            crash_point(crash_point_name)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    _remove_dead_temporaries(path)


def _remove_dead_temporaries(path: Path) -> None:
    """Delete temporary files in ``path``'s directory left by processes that died before
    their rename (a kill -9 between the fsync and the rename), whatever file they were for:
    the next write may have another name (a dated marker, say); a live writer's are kept."""
    for stale in path.parent.glob(".*.*.*.tmp"):  # .<name>.<pid>.<thread>.tmp
        pid = stale.name.rsplit(".", 3)[-3]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue
