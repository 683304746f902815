"""The ledger rebuilt from the lake: the files are the truth, the ledger is their index.

One listing finds every partition (on S3 a LIST request per 1,000 keys); a partition the
ledger does not know is read once (its bytes give the sha256, its footer and rows the
rest) and recorded; a ledger row whose file is gone is dropped. Jobs on machines that share
no filesystem with the controller publish to the lake and keep their own ledgers; the
controller reindexes at the end of the run, and ``marketpipe reindex`` does it on demand.
Month files are then recorded when their footers name exactly the day files the ledger holds.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.lake.actions import actions_key, stored_symbols
from marketpipe.lake.consolidated import reindex_months
from marketpipe.lake.ledger import ActionsEntry, CheckpointStore, LedgerEntry, StreamKey
from marketpipe.lake.news import adopt_unrecorded_news
from marketpipe.lake.objects import S3_MAX_CONNECTIONS, LakeStore
from marketpipe.lake.storage import (
    ADJUSTMENT_KEY,
    QUARANTINE_DIR,
    partition_key,
    present_partitions,
    quarantine_key,
    read_table_at,
)
from marketpipe.lake.ticks import adopt_unrecorded_ticks
from marketpipe.lake.validation import count_flagged
from marketpipe.observability.progress import with_progress


@dataclass(frozen=True)
class ReindexResult:
    """What the ledger learned and forgot."""

    adopted: int
    dropped: int
    unchanged: int


def _entry(
    lake: LakeStore, symbol: str, day: dt.date, has_rejects: bool
) -> tuple[LedgerEntry, StreamKey | None, dt.datetime | None]:
    data = lake.get(partition_key(symbol, day))
    table = pq.read_table(pa.BufferReader(data))
    rejected = read_table_at(lake, quarantine_key(symbol, day)).num_rows if has_rejects else 0
    metadata = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    stream = StreamKey(
        symbol,
        metadata.get("marketpipe.timeframe", "?"),
        metadata.get("marketpipe.feed", "?"),
        metadata.get(ADJUSTMENT_KEY, "raw"),
    )
    last_bar = pc.max(table["timestamp"]).as_py() if table.num_rows else None
    entry = LedgerEntry(
        symbol,
        day,
        table.num_rows,
        hashlib.sha256(data).hexdigest(),
        table.num_rows == 0,
        rejected,
        0,
        count_flagged(table),
    )
    return entry, stream, last_bar


def reindex(store: CheckpointStore, lake: LakeStore) -> ReindexResult:
    """Make ``store`` agree with the partitions in ``lake`` (see the module doc)."""
    present = present_partitions(lake, None)
    rejects = present_partitions(lake, None, QUARANTINE_DIR)
    known = {(entry.symbol, entry.day) for entry in store.all_entries()}
    new = sorted(present - known)
    with concurrent.futures.ThreadPoolExecutor(S3_MAX_CONNECTIONS) as pool:
        reading = pool.map(lambda item: _entry(lake, *item, item in rejects), new)
        records = list(with_progress(reading, len(new), "reindexing"))
    store.publish_many(records)
    gone = sorted(known - present)
    by_symbol: dict[str, list[dt.date]] = {}
    for symbol, day in gone:
        by_symbol.setdefault(symbol, []).append(day)
    for symbol, days in by_symbol.items():
        store.forget(symbol, days)
    _reindex_actions(store, lake)
    adopt_unrecorded_news(lake, store, "reindex")
    adopt_unrecorded_ticks(lake, store, "reindex")
    reindex_months(lake, store)
    return ReindexResult(len(new), len(gone), len(present & known))


def _reindex_actions(store: CheckpointStore, lake: LakeStore) -> None:
    """Record corporate-actions files the ledger does not know. Which ``process_date`` range
    the vendor was asked about is not in the file: recorded as unknown (an empty range), so
    the next check asks about everything again."""
    known = store.actions_entries()
    entries = []
    for symbol in stored_symbols(lake):
        if symbol in known:
            continue
        data = lake.get(actions_key(symbol))
        rows = pq.read_metadata(pa.BufferReader(data)).num_rows
        sha256 = hashlib.sha256(data).hexdigest()
        entries.append(ActionsEntry(symbol, rows, sha256, dt.date.max, dt.date.min))
    store.record_actions(entries)
