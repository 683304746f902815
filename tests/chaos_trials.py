"""Crash trials: kill a workflow run at a crash point, recover as documented, check the lake."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marketpipe.chaos import CRASH_POINTS, CRASH_VARIABLE
from marketpipe.lake.actions import ACTIONS_DIR
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import MONTHLY_DIR
from marketpipe.lake.news import NEWS_DIR, news_key
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import LAKE_DIR, as_store
from marketpipe.lake.ticks import KINDS as TICK_KINDS

# How often each crash point is at least reached by a cold run of two liquid symbols over
# 2024-01-02..2024-03-28 (three jobs, about a dozen pages, one ledger commit per page), so a
# crash drawn from 1..N always happens.
SMALL_RUN_ARRIVALS = {"request": 10, "parquet_write": 110, "checkpoint_commit": 12}


def lake_hashes(lake: LakeStore | Path | str) -> dict[str, str]:
    """sha256 of every data file of the lake (bars, month files, corporate actions, news,
    trades and quotes), by key relative to its root (``ohlcv/symbol=...``,
    ``ohlcv_monthly/symbol=...``, ``corporate_actions/symbol=...``, ``news/year=...``,
    ``trades/symbol=...``)."""
    store = as_store(lake)
    return {
        key: hashlib.sha256(store.get(key)).hexdigest()
        for area in (LAKE_DIR, MONTHLY_DIR, ACTIONS_DIR, NEWS_DIR, *TICK_KINDS)
        for key in store.list(area)
        if key.endswith(".parquet")
    }


def bar_files(hashes: dict[str, str]) -> dict[str, str]:
    """The bar partitions among :func:`lake_hashes`."""
    return {path: digest for path, digest in hashes.items() if path.startswith(f"{LAKE_DIR}/")}


@dataclass(frozen=True)
class TrialResult:
    """What one crash trial found after recovery."""

    point: str
    nth: int
    crashed: bool
    recovered: bool
    identical: bool
    ledger_consistent: bool
    temp_files: tuple[str, ...]  # temporary files left behind (none, when the trial passed)
    integrity: str

    @property
    def passed(self) -> bool:
        """Recovery gave the reference lake, a consistent ledger and a healthy store."""
        return (
            self.recovered
            and self.identical
            and self.ledger_consistent
            and not self.temp_files
            and self.integrity == "ok"
        )


def run_crash_trial(
    command: Sequence[str],
    workdir: Path,
    data_dir: Path,
    point: str,
    nth: int,
    reference: dict[str, str],
    timeout: float = 600,
    lake: LakeStore | None = None,
) -> TrialResult:
    """Run ``command`` with a crash at ``point``:``nth``, recover, and compare to ``reference``.

    Recovery is the documented one: ``command`` again, nothing else. ``data_dir``
    holds the ledger; the files are compared in ``lake`` (default: ``data_dir`` itself).
    """
    if point not in CRASH_POINTS:
        raise ValueError(f"unknown crash point {point!r}; choose from {CRASH_POINTS}")
    environment = {**os.environ, CRASH_VARIABLE: f"{point}:{nth}"}
    first = subprocess.run(
        list(command),
        cwd=workdir,
        env=environment,
        capture_output=True,
        start_new_session=True,
        timeout=timeout,
        check=False,
    )
    crashed = first.returncode == -signal.SIGKILL
    clean = {k: v for k, v in os.environ.items() if k != CRASH_VARIABLE}
    second = subprocess.run(
        list(command), cwd=workdir, env=clean, capture_output=True, timeout=timeout, check=False
    )
    hashes = lake_hashes(lake if lake is not None else data_dir)
    with CheckpointStore(data_dir) as store:
        integrity = store.integrity_check()
        ledger = {(e.symbol, e.day.isoformat()): e.sha256 for e in store.all_entries()}
        news_ledger = {news_key(day): entry.sha256 for day, entry in store.news_entries().items()}
    by_key = {}
    for relative, digest in bar_files(hashes).items():
        parts = dict(part.split("=", 1) for part in Path(relative).parts[1:-1])
        key = (parts["symbol"], f"{parts['year']}-{parts['month']}-{parts['day']}")
        by_key[key] = digest
    return TrialResult(
        point=point,
        nth=nth,
        crashed=crashed,
        recovered=second.returncode == 0,
        identical=hashes == reference,
        ledger_consistent=ledger == by_key
        and news_ledger == {key: digest for key, digest in hashes.items() if key in news_ledger}
        and set(news_ledger) == {key for key in hashes if key.startswith(f"{NEWS_DIR}/")},
        temp_files=tuple(str(path) for path in sorted(Path(data_dir).rglob("*.tmp"))),
        integrity=integrity,
    )
