"""Fetch symbols' missing trading days and publish each day as soon as it is complete.

Symbols missing the same run of days share one paginated stream. Bars arrive ordered by
symbol, then time, so a day is complete when a bar of a later day or a later symbol (or
the end of the stream) arrives. Each day is validated, its bad rows quarantined, its
partition written atomically, and only then recorded in the checkpoint ledger.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.connectors import (
    OHLCV_SCHEMA,
    ApiError,
    BarsQuery,
    BaseApiClient,
    ConnectorError,
    ResponseFormatError,
    TlsVerificationError,
    UnknownSymbolError,
)
from marketpipe.lake.ledger import CheckpointStore, LedgerEntry, StreamKey
from marketpipe.lake.objects import LakeStore, LocalStore
from marketpipe.lake.storage import (
    ADJUSTMENT_KEY,
    DAY_KEY,
    LAKE_DIR,
    QUARANTINE_DIR,
    REASON_COLUMN,
    SYMBOL_KEY,
    as_store,
    day_prefix,
    new_york_day_keys,
    partition_key,
    partition_of,
    publish_partition,
    quarantine_key,
    read_partition,
    read_table_at,
)
from marketpipe.lake.validation import count_flagged, validate_bars
from marketpipe.markettime import clock
from marketpipe.markettime.calendar import (
    Session,
    contiguous_runs,
    new_york_midnight,
    trading_sessions,
)
from marketpipe.markettime.finality import DEFAULT_SETTLE_MINUTES, Finality, describe_final_at
from marketpipe.markettime.timeframe import Timeframe

logger = logging.getLogger(__name__)

QUARANTINE_SCHEMA = OHLCV_SCHEMA.append(pa.field(REASON_COLUMN, pa.string(), nullable=False))


@dataclass(frozen=True)
class StreamSettings:
    """What the bars are: vendor, timeframe, feed and adjustment (the file provenance)."""

    vendor: str
    timeframe: Timeframe
    feed: str
    adjustment: str
    settle: dt.timedelta = dt.timedelta(minutes=DEFAULT_SETTLE_MINUTES)

    @property
    def finality(self) -> Finality:
        """When this stream's sessions are final."""
        return Finality(self.feed, self.timeframe, self.settle)

    def key(self, symbol: str) -> StreamKey:
        """The checkpoint key of ``symbol``'s stream."""
        return StreamKey(symbol, str(self.timeframe), self.feed, self.adjustment)

    def metadata(self, symbol: str, day: dt.date) -> dict[str, str]:
        """Key-value metadata written into every partition file (nothing wall-clock)."""
        return {
            "marketpipe.vendor": self.vendor,
            "marketpipe.markettime.timeframe": str(self.timeframe),
            "marketpipe.feed": self.feed,
            ADJUSTMENT_KEY: self.adjustment,
            SYMBOL_KEY: symbol,
            DAY_KEY: day.isoformat(),
        }


class SymbolsFailed(ConnectorError):
    """Some symbols could not be fetched; the others were published. Names each one and why."""

    def __init__(self, errors: dict[str, ConnectorError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{symbol}: {error}" for symbol, error in errors.items()))


@dataclass
class IngestReport:
    """What one ingest call did; day counts are partitions (symbol-days)."""

    symbols: tuple[str, ...]
    planned_days: int = 0
    missing_days: int = 0
    requests: int = 0
    published: list[LedgerEntry] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows published."""
        return sum(entry.rows for entry in self.published)

    @property
    def rejected_rows(self) -> int:
        """Rows sent to quarantine."""
        return sum(entry.rejected_rows for entry in self.published)

    @property
    def flagged_rows(self) -> int:
        """Rows kept but flagged (open or close outside [low, high])."""
        return sum(entry.flagged_rows for entry in self.published)


def reconcile(
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
            extra={"event": "ledger.reconciled", "symbol": symbol, "days": len(gone)},
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


def _split_by_day(table: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    if table.num_rows == 0:
        return []
    keys = new_york_day_keys(table)
    parts = []
    for key in pc.unique(keys).to_pylist():
        day = dt.date(key // 10_000, key // 100 % 100, key % 100)
        parts.append((day, table.filter(pc.equal(keys, key))))
    return parts


class _LedgerBatch:
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
        self.report.published.extend(entry for entry, _, _ in self.pending)
        self.pending = []


class _RunPublisher:
    """Publishes the days of one contiguous run, in order, as the stream completes them."""

    def __init__(
        self,
        ledger: _LedgerBatch,
        lake: LakeStore,
        symbol: str,
        run: list[dt.date],
        stream: StreamSettings,
    ) -> None:
        self.ledger = ledger
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
        written = publish_partition(
            self.lake, partition_key(self.symbol, day), result.valid, metadata, background=True
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


def _has_bars(store: CheckpointStore, symbol: str) -> bool:
    return any(entry.rows for entry in store.ledger(symbol).values())


def _split_by_symbol(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Consecutive same-symbol slices of a page, in page order."""
    if table.num_rows == 0:
        return []
    column = table["symbol"].combine_chunks()
    changes = pc.indices_nonzero(pc.not_equal(column[1:], column[:-1])).to_numpy() + 1
    bounds = [0, *changes.tolist(), table.num_rows]
    return [
        (column[begin].as_py(), table.slice(begin, end - begin))
        for begin, end in itertools.pairwise(bounds)
    ]


def _can_isolate(error: ConnectorError) -> bool:
    """Whether fetching symbols one by one could get past ``error`` (not auth or TLS)."""
    if isinstance(error, TlsVerificationError):
        return False
    return not (isinstance(error, ApiError) and error.status in (401, 403))


@dataclass
class _Ingest:
    """One ingest call's shared state."""

    client: BaseApiClient[BarsQuery]
    store: CheckpointStore
    lake: LakeStore
    stream: StreamSettings
    report: IngestReport
    adopt: bool = True

    def query(self, symbols: tuple[str, ...], run: list[dt.date]) -> BarsQuery:
        """The bars request of one stream: its first day's midnight to its last bar window."""
        (last,) = trading_sessions(run[-1], run[-1])
        return BarsQuery(
            symbols=symbols,
            timeframe=str(self.stream.timeframe),
            start=new_york_midnight(run[0]),
            end=self.stream.finality.request_end(last),
            feed=self.stream.feed,  # type: ignore[arg-type]
            adjustment=self.stream.adjustment,
        )

    def run_stream(
        self, symbols: tuple[str, ...], run: list[dt.date]
    ) -> dict[str, UnknownSymbolError]:
        """Fetch ``run`` for ``symbols`` in one paginated stream; return unknown symbols.

        A symbol's days are published once a later symbol's bars arrive; a symbol with no
        bars waits for the end, so a typo is not recorded as a string of empty days.
        """
        ledger = _LedgerBatch(self.store, self.report, self.lake)
        try:
            return self._stream(symbols, run, ledger)
        finally:
            ledger.commit()

    def _stream(
        self, symbols: tuple[str, ...], run: list[dt.date], ledger: _LedgerBatch
    ) -> dict[str, UnknownSymbolError]:
        publishers = {
            symbol: _RunPublisher(ledger, self.lake, symbol, run, self.stream) for symbol in symbols
        }
        position = {symbol: index for index, symbol in enumerate(symbols)}
        current = 0
        query = self.query(symbols, run)
        for table in self.client.fetch_batch(query):
            self.report.requests += 1
            parts = _split_by_symbol(table)
            charged = parts[0][0] if parts else symbols[min(current, len(symbols) - 1)]
            publishers[charged].requests_since_publish += 1
            for symbol, part in parts:
                if symbol not in position:
                    raise ResponseFormatError(f"a page has bars for {symbol}, not requested")
                if position[symbol] < current:
                    # Its days may be published already: never patch them, refetch instead.
                    raise ResponseFormatError(
                        f"bars for {symbol} came after bars for {symbols[current]}; "
                        "the vendor's pages are not ordered by symbol"
                    )
                while current < position[symbol]:
                    if publishers[symbols[current]].rows_received:
                        publishers[symbols[current]].finish()
                    current += 1
                publishers[symbol].add_page(part)
            ledger.commit()
        silent = [symbol for symbol in symbols if not publishers[symbol].rows_received]
        doubtful = tuple(symbol for symbol in silent if not _has_bars(self.store, symbol))
        unknown = self.client.unknown_symbols(doubtful, query) if doubtful else set()
        for symbol in symbols:
            if symbol not in unknown:
                publishers[symbol].finish()
        return {
            symbol: UnknownSymbolError(
                f"the vendor does not know {symbol}: no bars on any of {len(run)} trading "
                f"day(s) and no latest bar on the {query.feed} feed; check the symbol in the config"
            )
            for symbol in sorted(unknown)
        }


def ingest_days(
    client: BaseApiClient[BarsQuery],
    store: CheckpointStore,
    lake: LakeStore | Path,
    symbols: Sequence[str],
    days: list[dt.date],
    stream: StreamSettings,
    report: IngestReport | None = None,
    now: dt.datetime | None = None,
    adopt: bool = True,
) -> IngestReport:
    """Fetch and publish whichever of ``days`` (NYSE sessions) are not in the lake yet.

    Every day must be final at ``now`` (default: :func:`~marketpipe.markettime.clock.now`); a day
    that is not is refused with a :class:`ValueError` naming it, before any request.

    Each symbol's missing days are grouped into runs of consecutive sessions; symbols with
    the same run share one paginated request stream, so a resumed or extended backfill never
    re-requests published days and thin symbols fill each other's pages. When a shared
    stream fails, its unfinished symbols are retried one by one so that one bad symbol cannot
    hold back the rest. Raises :class:`SymbolsFailed` naming the symbols that still failed,
    after publishing the others. Pass ``report`` to keep the progress made before an exception.
    ``adopt`` is :func:`reconcile`'s.
    """
    days = sorted(days)
    lake = as_store(lake)
    _require_final(days, stream.finality, now if now is not None else clock.now())
    symbols = tuple(sorted(symbols))
    report = report or IngestReport(symbols=symbols)
    report.planned_days = len(days) * len(symbols)
    streams: dict[tuple[dt.date, ...], list[str]] = {}
    for symbol in symbols:
        missing = reconcile(store, lake, symbol, days, adopt)
        report.missing_days += len(missing)
        for run in contiguous_runs(missing, days):
            streams.setdefault(tuple(run), []).append(symbol)
    ingest = _Ingest(client, store, lake, stream, report, adopt)
    errors: dict[str, ConnectorError] = {}
    for run, members in sorted(streams.items()):
        try:
            errors.update(ingest.run_stream(tuple(members), list(run)))
        except ConnectorError as error:
            if not _can_isolate(error):
                raise
            if len(members) == 1:
                errors[members[0]] = error
                continue
            logger.warning(
                "a stream of %d symbols failed (%s); fetching them one by one",
                len(members),
                error,
                extra={"event": "stream.split", "symbols": members},
            )
            errors.update(_one_by_one(ingest, members, list(run), days))
    if errors:
        raise SymbolsFailed(dict(sorted(errors.items())))
    return report


def _require_final(days: list[dt.date], finality: Finality, now: dt.datetime) -> None:
    """Refuse days that are not NYSE sessions, or not final at ``now``."""
    if not days:
        return
    sessions = {session.date: session for session in trading_sessions(days[0], days[-1])}
    for day in days:
        session = sessions.get(day)
        if session is None:
            raise ValueError(f"{day} is not an NYSE session; there are no bars to fetch for it")
        if not finality.is_final(session, now):
            raise ValueError(
                f"{day} is not final until {describe_final_at(finality.final_at(session))}; "
                "its bars may still change, so it is neither fetched nor written before then"
            )


def _one_by_one(
    ingest: _Ingest, symbols: list[str], run: list[dt.date], days: list[dt.date]
) -> dict[str, ConnectorError]:
    """Fetch each symbol's still-missing days of ``run`` alone; return the failures.

    Two failures in a row without a success mean the vendor itself is failing: the
    remaining symbols are not tried (a rerun will), rather than waiting out every retry.
    """
    errors: dict[str, ConnectorError] = {}
    failures_in_a_row = 0
    for symbol in symbols:
        if failures_in_a_row >= 2:
            errors[symbol] = ConnectorError(
                "not fetched: the vendor failed for the symbols before it as well"
            )
            continue
        missing = reconcile(ingest.store, ingest.lake, symbol, run, ingest.adopt)
        try:
            for part in contiguous_runs(missing, days):
                errors.update(ingest.run_stream((symbol,), part))
            failures_in_a_row = 0
        except ConnectorError as error:
            if not _can_isolate(error):
                raise
            errors[symbol] = error
            failures_in_a_row += 1
    return errors
