"""Atomic file writes: readers see the old file or the new one, never a part of either; and a
lock for a read-modify-write of one."""

from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from marketpipe.chaos import crash_point


def write_atomically(path: Path, data: bytes, crash_point_name: str | None = None) -> None:
    """Write ``data`` to ``path`` so that readers only ever see the old or the new file.

    The bytes go to a temporary file beside the target, are fsynced, and are renamed over
    the target; the directory is fsynced so the rename survives a crash.
    """
    with atomic_file(path, crash_point_name) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


@contextmanager
def atomic_file(path: Path, crash_point_name: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a file to (streaming, as long as it takes);
    when the block ends without an error the file is fsynced and renamed over ``path`` (and
    the directory fsynced), else it is removed: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
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
    _remove_dead_temporaries(path.parent)


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def stage_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` (not yet durable, not yet at
    ``path``); :func:`publish_staged` makes a batch of them durable and renames them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    with open(temporary, "wb") as handle:
        handle.write(data)
    return temporary


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs(2)``: one call makes a whole filesystem's pending writes durable."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


def _make_durable(root: Path, files: Sequence[Path]) -> None:
    """Make ``files`` (and their directories' entries) durable: one ``syncfs`` of the
    filesystem holding ``root`` where the system has it, else an fsync of each."""
    syncfs = _syncfs()
    if syncfs is not None:
        descriptor = os.open(root, os.O_RDONLY)
        try:
            if syncfs(descriptor) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"syncfs {root}: {os.strerror(error)}")
        finally:
            os.close(descriptor)
        return
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def publish_staged(root: Path, staged: Sequence[tuple[Path, Path, str | None]]) -> None:
    """Make staged ``(temporary, final path, crash point)`` files durable, rename each over
    its final path, and make the renames durable: readers see old files or whole new ones,
    and a page of partitions costs two syncs instead of two per file."""
    if not staged:
        return
    _make_durable(root, [temporary for temporary, _, _ in staged])
    for temporary, path, crash_point_name in staged:
        if crash_point_name:
            crash_point(crash_point_name)
        os.replace(temporary, path)
    directories = sorted({path.parent for _, path, _ in staged})
    _make_durable(root, directories)
    for directory in directories:
        _remove_dead_temporaries(directory)


def remove_dead_temporaries(root: Path) -> None:
    """Delete, anywhere under ``root``, the temporary files of processes that died before
    their rename: a run killed while writing a marker into its own run's directory leaves
    one where no later write looks (a live writer's are kept)."""
    for directory, _, names in os.walk(root):
        if any(name.endswith(".tmp") for name in names):
            _remove_dead_temporaries(Path(directory))


def _remove_dead_temporaries(directory: Path) -> None:
    """Delete temporary files in ``directory`` left by processes that died before
    their rename (a kill -9 between the fsync and the rename), whatever file they were for:
    the next write may have another name (a dated marker, say); a live writer's are kept."""
    for stale in directory.glob(".*.*.*.tmp"):  # .<name>.<pid>.<thread>.tmp
        pid = stale.name.rsplit(".", 3)[-3]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) while inside: threads and
    processes of this machine that take it wait for one another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
