"""SQLite plumbing shared by the checkpoint store and the shared rate budget."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path


def connect(
    path: Path, *, durable: bool = True, shared_across_threads: bool = False
) -> sqlite3.Connection:
    """Open (creating) a WAL-mode database that waits for, rather than fails on, a busy lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        path, timeout=60, isolation_level=None, check_same_thread=not shared_across_threads
    )
    db.execute("PRAGMA busy_timeout=60000")
    _enable_wal(db)
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return db


def _enable_wal(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL; when several jobs create the database at once, SQLite answers the
    switch with "database is locked" without waiting, so wait and try again."""
    for attempt in range(attempts):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * (1 + attempt % 5))


@contextmanager
def transaction(
    db: sqlite3.Connection, lock: threading.Lock | None = None
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    with lock if lock is not None else nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
