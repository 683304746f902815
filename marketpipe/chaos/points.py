"""Crash points: kill a run at a chosen moment, like a power cut (for crash trials).

Setting ``MARKETPIPE_CRASH_AT=<point>:<n>`` makes the n-th arrival at a crash point
SIGKILL the whole process group, exactly like a power cut. Points: ``request`` (a response
has arrived, its body is unread), ``parquet_write`` (a partition's bytes are fsynced in the
temporary file, not yet renamed) and ``checkpoint_commit`` (a ledger row is written inside
the open SQLite transaction, not committed). Only for trials: run the workflow in its own
session (``start_new_session=True``) so nothing else shares its process group.
"""

from __future__ import annotations

import collections
import os
import signal
import threading

CRASH_VARIABLE = "MARKETPIPE_CRASH_AT"
CRASH_POINTS = ("request", "parquet_write", "checkpoint_commit")
_arrivals: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process group if ``MARKETPIPE_CRASH_AT`` names this arrival here."""
    wanted = os.environ.get(CRASH_VARIABLE)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    with _lock:
        _arrivals[name] += 1
        hit = _arrivals[name] == int(nth or 1)
    if hit:
        os.killpg(os.getpgid(0), signal.SIGKILL)
