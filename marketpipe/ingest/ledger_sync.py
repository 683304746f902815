"""Make the ledger agree with the lake's files before fetching: drop rows of gone files, adopt
files a crash left unrecorded, remove dead temporaries (comparing two lakes is another thing:
:mod:`marketpipe.lake.compare`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.lake.ledger import CheckpointStore, LedgerEntry
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import (
    LAKE_DIR,
    QUARANTINE_DIR,
    as_store,
    day_prefix,
    partition_key,
    partition_of,
    quarantine_key,
    read_table_at,
)
from marketpipe.lake.validation import count_flagged

logger = logging.getLogger(__name__)


def sync_ledger_with_files(
    store: CheckpointStore,
    lake: LakeStore | Path,
    symbol: str,
    days: list[dt.date],
    adopt: bool = True,
) -> list[dt.date]:
    """Make the ledger agree with the files; return the days that still need fetching.

    A ledger row whose file is gone no longer counts; a file without a ledger row (a crash
    between publishing and recording) is adopted, unless ``adopt`` is false (a job of an S3
    lake, whose controller reindexes from the lake); stale temporary files are removed. The
    files are found by listing (one LIST per month on S3), never one request per day.
    """
    lake = as_store(lake)
    ledger = store.ledger(symbol, days)
    if isinstance(lake, LocalStore):
        _remove_stale_temporaries(lake, symbol, days)
    present = _present_days(lake, symbol, days, LAKE_DIR)
    rejected = _present_days(lake, symbol, days, QUARANTINE_DIR)
    gone = []
    missing = []
    for day in days:
        if day not in present:
            missing.append(day)
            if day in ledger:
                gone.append(day)
            continue
        if day not in ledger and adopt:
            _adopt(store, lake, symbol, day, day in rejected)
    if gone:
        logger.warning(
            "%s: %d ledger row(s) had no file and were dropped",
            symbol,
            len(gone),
            extra={"event": "ledger.synced", "symbol": symbol, "days": len(gone)},
        )
        store.forget(symbol, gone)
    return missing


def _remove_stale_temporaries(lake: LocalStore, symbol: str, days: list[dt.date]) -> None:
    for day in days:
        for area in (LAKE_DIR, QUARANTINE_DIR):
            directory = lake.path(day_prefix(area, symbol, day))
            if directory.is_dir():
                for stale in directory.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)


def _present_days(lake: LakeStore, symbol: str, days: list[dt.date], area: str) -> set[dt.date]:
    """Which of ``days`` have a file of ``symbol`` in ``area``, by one listing per month."""
    months = sorted({(day.year, day.month) for day in days})
    wanted = set(days)
    found = set()
    for year, month in months:
        prefix = f"{area}/symbol={symbol}/year={year:04d}/month={month:02d}"
        for key in lake.list(prefix):
            located = partition_of(Path(key))
            if located is not None and located[1] in wanted and key.endswith(".parquet"):
                found.add(located[1])
    return found


def _adopt(
    store: CheckpointStore, lake: LakeStore, symbol: str, day: dt.date, has_rejects: bool
) -> None:
    data = lake.get(partition_key(symbol, day))
    table = pq.read_table(pa.BufferReader(data))
    rows = table.num_rows
    rejected = read_table_at(lake, quarantine_key(symbol, day)).num_rows if has_rejects else 0
    sha256 = hashlib.sha256(data).hexdigest()
    entry = LedgerEntry(symbol, day, rows, sha256, rows == 0, rejected, 0, count_flagged(table))
    # The high-water mark is not moved here: the stream's next publish will do that.
    store.publish(entry)
