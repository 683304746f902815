"""Damaged partitions found cheaply and repaired: moved aside, never served, fetched again.

When a partition is published its size and modification time are remembered. A run compares
each present file with them (one ``stat``, no read); only a file whose stat changed is
hashed, and one whose bytes no longer match the ledger is damaged (a tool or a bad disk wrote
it). Damaged files are moved aside to ``<lake>/_damaged/<stamp>/...`` with the reason beside
them, and their ledger rows dropped, so the run fetches them again. A file changed with the
same size and modification time is ``marketpipe verify``'s to find (it hashes everything).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.storage import file_sha256, partition_key

DAMAGED_DIR = "_damaged"


@dataclass(frozen=True)
class Damage:
    """A partition whose file no longer holds what the ledger recorded."""

    symbol: str
    day: dt.date
    reason: str


def file_stats(
    lake: LocalStore, partitions: Sequence[tuple[str, dt.date]]
) -> list[tuple[str, dt.date, int, int]]:
    """(symbol, day, size, mtime_ns) of the partitions' files, as they are now."""
    stats = []
    for symbol, day in partitions:
        status = lake.path(partition_key(symbol, day)).stat()
        stats.append((symbol, day, status.st_size, status.st_mtime_ns))
    return stats


def find_damaged(store: CheckpointStore, lake: LocalStore) -> list[Damage]:
    """Partitions whose file changed on disk since it was written and whose bytes no longer
    match the ledger (a file touched but unchanged just has its stat remembered anew)."""
    remembered = store.file_stats()
    if not remembered:
        return []
    ledger = {(entry.symbol, entry.day): entry for entry in store.all_entries()}
    damaged, touched = [], []
    for (symbol, day), (size, mtime) in sorted(remembered.items()):
        path = lake.path(partition_key(symbol, day))
        try:
            status = path.stat()
        except FileNotFoundError:  # missing: planning fetches it anyway
            continue
        if (status.st_size, status.st_mtime_ns) == (size, mtime):
            continue
        entry = ledger.get((symbol, day))
        if entry is None:
            continue
        if file_sha256(path) == entry.sha256:
            touched.append((symbol, day, status.st_size, status.st_mtime_ns))
            continue
        reason = (
            f"changed on disk after it was written ({status.st_size:,} bytes, written with "
            f"{size:,}; its sha256 no longer matches the ledger)"
        )
        damaged.append(Damage(symbol, day, reason))
    store.record_file_stats(touched)
    return damaged


def move_aside(
    store: CheckpointStore, lake: LocalStore, damaged: Sequence[Damage], stamp: str
) -> Path | None:
    """Move damaged files to ``_damaged/<stamp>/`` (kept, with ``.reason`` files beside them)
    and drop their ledger rows, so the next fetch writes them again; the directory used."""
    if not damaged:
        return None
    target = lake.path(f"{DAMAGED_DIR}/{stamp}")
    for damage in damaged:
        key = partition_key(damage.symbol, damage.day)
        destination = target / key
        destination.parent.mkdir(parents=True, exist_ok=True)
        invalidate_months(lake, store, damage.symbol, [damage.day])
        os.replace(lake.path(key), destination)
        reason = destination.with_name(destination.name + ".reason")
        write_atomically(reason, f"{damage.symbol} {damage.day}: {damage.reason}\n".encode())
        store.forget(damage.symbol, [damage.day])
    return target


def describe_damage(damaged: Sequence[Damage], shown: int = 5) -> str:
    """``AAPL 2024-01-10 (changed on disk ...), ...`` for messages."""
    text = ", ".join(f"{d.symbol} {d.day} ({d.reason})" for d in damaged[:shown])
    return text + (f" and {len(damaged) - shown} more" if len(damaged) > shown else "")
