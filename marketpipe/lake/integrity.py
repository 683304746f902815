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
from typing import Literal

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.actions import actions_key
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import Month, month_key
from marketpipe.lake.news import news_key
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.storage import file_sha256, partition_key
from marketpipe.lake.ticks import KINDS, tick_key

DAMAGED_DIR = "_damaged"


@dataclass(frozen=True)
class Damage:
    """A partition whose file no longer holds what the ledger recorded."""

    symbol: str
    day: dt.date
    reason: str

    @property
    def label(self) -> str:
        """``AAPL 2024-01-10``."""
        return f"{self.symbol} {self.day}"


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


@dataclass(frozen=True)
class FileDamage:
    """A month, news, corporate-actions, trades or quotes file whose bytes are no longer
    those the ledger recorded."""

    kind: Literal["month", "news", "actions", "trades", "quotes"]
    key: str
    label: str
    reason: str = "changed on disk after it was written (its sha256 no longer matches the ledger)"
    symbol: str = ""
    month: Month | None = None
    day: dt.date | None = None


def _recorded_files(store: CheckpointStore) -> list[tuple[FileDamage, str]]:
    """Every month, news, corporate-actions and tick file the ledger records, with its
    sha256."""
    files = []
    for (symbol, month), entry in sorted(store.month_entries().items()):
        label = f"{symbol} {month[0]:04d}-{month[1]:02d} (month file)"
        damage = FileDamage("month", month_key(symbol, month), label, symbol=symbol, month=month)
        files.append((damage, entry.sha256))
    for day, news in sorted(store.news_entries().items()):
        files.append((FileDamage("news", news_key(day), f"news {day}", day=day), news.sha256))
    for symbol, actions in sorted(store.actions_entries().items()):
        label = f"{symbol} corporate actions"
        files.append(
            (FileDamage("actions", actions_key(symbol), label, symbol=symbol), actions.sha256)
        )
    for (kind, symbol, day), entry in store.tick_entries().items():
        damage = FileDamage(
            kind, tick_key(kind, symbol, day), f"{kind} {symbol} {day}", symbol=symbol, day=day
        )
        files.append((damage, entry.sha256))
    return files


def find_damaged_files(store: CheckpointStore, lake: LocalStore) -> list[FileDamage]:
    """Recorded month, news, corporate-actions and tick files changed on disk since last seen
    (a ``stat`` each; a hash only for those, and once for those never seen) whose bytes no
    longer match the ledger."""
    remembered = store.file_stamps()
    damaged, seen = [], []
    for damage, sha in _recorded_files(store):
        path = lake.path(damage.key)
        try:
            status = path.stat()
        except FileNotFoundError:  # missing: planning makes it again
            continue
        if remembered.get(damage.key) == (status.st_size, status.st_mtime_ns):
            continue
        if file_sha256(path) == sha:
            seen.append((damage.key, status.st_size, status.st_mtime_ns))
        else:
            damaged.append(damage)
    store.record_file_stamps(seen)
    return damaged


def remove_damaged_files(
    store: CheckpointStore, lake: LocalStore, damaged: Sequence[FileDamage], stamp: str
) -> None:
    """Move damaged files aside to ``_damaged/<stamp>/`` and drop their ledger rows: the run
    builds a month file again from its day files, fetches a news, trades or quotes day again,
    and checks the symbol's corporate actions again."""
    for damage in damaged:
        destination = lake.path(f"{DAMAGED_DIR}/{stamp}") / damage.key
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(lake.path(damage.key), destination)
        reason = destination.with_name(destination.name + ".reason")
        write_atomically(reason, f"{damage.label}: {damage.reason}\n".encode())
        if damage.kind == "month" and damage.month is not None:
            store.forget_months(damage.symbol, [damage.month])
        elif damage.kind == "news" and damage.day is not None:
            store.forget_news([damage.day])
        elif damage.kind in KINDS and damage.day is not None:
            store.forget_ticks(damage.kind, damage.symbol, [damage.day])
        else:
            store.forget_actions([damage.symbol])


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


def describe_damage(damaged: Sequence[Damage | FileDamage], shown: int = 5) -> str:
    """``AAPL 2024-01-10 (changed on disk ...), ...`` for messages."""
    text = ", ".join(f"{d.label} ({d.reason})" for d in damaged[:shown])
    return text + (f" and {len(damaged) - shown} more" if len(damaged) > shown else "")
