"""Publishing a stream's days: split pages by New York day, validate, quarantine bad rows,
write each partition atomically and record the ledger rows once per page."""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors import OHLCV_SCHEMA
from marketpipe.ingest.stream import IngestReport, StreamSettings
from marketpipe.lake.integrity import file_stats
from marketpipe.lake.ledger import CheckpointStore, LedgerEntry, StreamKey
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import (
    REASON_COLUMN,
    new_york_day_keys,
    partition_key,
    publish_partition,
    quarantine_key,
    read_partition,
)
from marketpipe.lake.validation import validate_bars
from marketpipe.markettime.calendar import (
    Session,
    trading_sessions,
)

logger = logging.getLogger(__name__)

QUARANTINE_SCHEMA = OHLCV_SCHEMA.append(pa.field(REASON_COLUMN, pa.string(), nullable=False))


def _split_by_day(table: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    if table.num_rows == 0:
        return []
    keys = new_york_day_keys(table)
    parts = []
    for key in pc.unique(keys).to_pylist():
        day = dt.date(key // 10_000, key // 100 % 100, key % 100)
        parts.append((day, table.filter(pc.equal(keys, key))))
    return parts


class LedgerBatch:
    """Ledger rows of published partitions, committed together once per page.

    One commit per page instead of per partition; a crash in between leaves files the
    ledger does not know, which the next run adopts (see ``reconcile``).
    """

    def __init__(self, store: CheckpointStore, report: IngestReport, lake: LakeStore) -> None:
        self.store = store
        self.report = report
        self.lake = lake
        self.pending: list[tuple[LedgerEntry, StreamKey | None, dt.datetime | None]] = []

    def add(self, entry: LedgerEntry, stream: StreamKey, last_bar: dt.datetime | None) -> None:
        """Queue the row of a partition that is already at its final path."""
        self.pending.append((entry, stream, last_bar))

    def commit(self) -> None:
        """Record the queued rows in one transaction, once their files are durable."""
        self.lake.flush()
        self.store.publish_many(self.pending)
        if isinstance(self.lake, LocalStore):
            self.store.record_file_stats(
                file_stats(self.lake, [(entry.symbol, entry.day) for entry, _, _ in self.pending])
            )
        self.report.published.extend(entry for entry, _, _ in self.pending)
        self.pending = []


class RunPublisher:
    """Publishes the days of one contiguous run, in order, as the stream completes them."""

    def __init__(
        self,
        ledger: LedgerBatch,
        lake: LakeStore,
        symbol: str,
        run: list[dt.date],
        stream: StreamSettings,
        expects_bars: Callable[[str, dt.date], bool] | None = None,
    ) -> None:
        self.ledger = ledger
        self.expects_bars = expects_bars
        # Days the vendor answered without a bar although its reference data says the symbol
        # was listed then: left unpublished (missing, asked again), never recorded as empty.
        self.suspect_days: list[dt.date] = []
        self.lake = lake
        self.symbol = symbol
        self.run = run
        self.stream = stream
        self.sessions: dict[dt.date, Session] = {
            session.date: session for session in trading_sessions(run[0], run[-1])
        }
        self.next_index = 0
        self.buffers: dict[dt.date, list[pa.Table]] = collections.defaultdict(list)
        self.stray: dict[dt.date, list[pa.Table]] = collections.defaultdict(list)
        self.requests_since_publish = 0
        self.rows_received = 0

    def add_page(self, table: pa.Table) -> None:
        """Take this symbol's rows of one page, publishing the days they complete."""
        self.rows_received += table.num_rows
        planned = set(self.run)
        for day, part in _split_by_day(table):
            unpublished = self.next_index < len(self.run) and day >= self.run[self.next_index]
            if day in planned and unpublished:
                self.publish_before(day)
                self.buffers[day].append(part)
            else:
                # A bar for a non-session day, or one that arrived after its day was
                # published: never silently merged, always quarantined with a reason.
                reason = "arrived after its day" if day in planned else "not a trading session"
                self.stray[day].append(_with_reason(part, reason))

    def publish_before(self, day: dt.date | None) -> None:
        """Publish every pending day earlier than ``day`` (all of them for ``None``)."""
        while self.next_index < len(self.run) and (day is None or self.run[self.next_index] < day):
            current = self.run[self.next_index]
            self._publish(current, self.buffers.pop(current, []))
            self.next_index += 1

    def finish(self) -> None:
        """Publish the remaining days and quarantine stray rows (safe to call again)."""
        self.publish_before(None)
        for day, parts in sorted(self.stray.items()):
            key = quarantine_key(self.symbol, day)
            try:
                existing = [read_partition(Path(key), self.lake)]
            except FileNotFoundError:
                existing = []
            table = pa.concat_tables([*existing, *parts]).cast(QUARANTINE_SCHEMA)
            publish_partition(self.lake, key, table, self.stream.metadata(self.symbol, day))
        self.stray.clear()

    def _publish(self, day: dt.date, parts: list[pa.Table]) -> None:
        if not parts and self.expects_bars is not None and self.expects_bars(self.symbol, day):
            self.suspect_days.append(day)
            return
        table = pa.concat_tables(parts) if parts else OHLCV_SCHEMA.empty_table()
        result = validate_bars(table, self.sessions[day], self.stream.feed, self.stream.timeframe)
        metadata = self.stream.metadata(self.symbol, day)
        if result.rejected.num_rows:
            publish_partition(
                self.lake,
                quarantine_key(self.symbol, day),
                result.rejected.cast(QUARANTINE_SCHEMA),
                metadata,
            )
        # A missing day's partition is a new object: on a shared lake (S3) it never replaces
        # other bytes, so a writer that lost its lease cannot overwrite the new holder's work.
        written = publish_partition(
            self.lake,
            partition_key(self.symbol, day),
            result.valid,
            metadata,
            background=True,
            create_only=True,
        )
        entry = LedgerEntry(
            symbol=self.symbol,
            day=day,
            rows=written.rows,
            sha256=written.sha256,
            known_empty=table.num_rows == 0,
            rejected_rows=result.rejected.num_rows,
            requests=self.requests_since_publish,
            flagged_rows=result.flagged,
        )
        self.requests_since_publish = 0
        last_bar = result.valid["timestamp"][-1].as_py() if written.rows else None
        self.ledger.add(entry, self.stream.key(self.symbol), last_bar)
        logger.info(
            "%s %s: %d bars published%s%s",
            self.symbol,
            day,
            written.rows,
            f", {entry.rejected_rows} quarantined" if entry.rejected_rows else "",
            f", {entry.flagged_rows} flagged (open/close outside [low, high])"
            if entry.flagged_rows
            else "",
            extra={
                "event": "partition.published",
                "symbol": self.symbol,
                "day": day.isoformat(),
                "rows": written.rows,
                "rejected": entry.rejected_rows,
                "flagged": entry.flagged_rows,
                "known_empty": entry.known_empty,
            },
        )


def _with_reason(table: pa.Table, reason: str) -> pa.Table:
    return table.append_column(REASON_COLUMN, pa.array([reason] * table.num_rows, pa.string()))
