"""Fetch symbols' missing trading days and publish each day as soon as it is complete.

Symbols missing the same run of days share one paginated stream. Bars arrive ordered by
symbol, then time, so a day is complete when a bar of a later day or a later symbol (or
the end of the stream) arrives. Each day is validated, its bad rows quarantined, its
partition written atomically, and only then recorded in the checkpoint ledger.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors import (
    BarsQuery,
    BaseApiClient,
    ConnectorError,
    ResponseFormatError,
    UnknownSymbolError,
)
from marketpipe.ingest.ledger_sync import sync_ledger_with_files
from marketpipe.ingest.publish import QUARANTINE_SCHEMA, LedgerBatch, RunPublisher
from marketpipe.ingest.stream import IngestReport, KnownSecurity, StreamSettings, SymbolsFailed
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import as_store
from marketpipe.markettime import clock
from marketpipe.markettime.calendar import (
    contiguous_runs,
    new_york_midnight,
    trading_sessions,
)
from marketpipe.markettime.finality import Finality, describe_final_at

__all__ = [
    "QUARANTINE_SCHEMA",
    "IngestReport",
    "KnownSecurity",
    "StreamSettings",
    "SymbolsFailed",
    "ingest_days",
    "sync_ledger_with_files",
]

from marketpipe.connectors.errors import may_differ_by_symbol

logger = logging.getLogger(__name__)


def _has_bars(store: CheckpointStore, symbol: str) -> bool:
    return any(entry.rows for entry in store.ledger(symbol).values())


def split_by_symbol(table: pa.Table) -> list[tuple[str, pa.Table]]:
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


@dataclass
class BarsIngest:
    """One ingest call's shared state: the client, the ledger, the lake and the report."""

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
            asof=self.stream.asof,
            traded_as=self.stream.tickers_of(symbols[0]) if len(symbols) == 1 else (),
        )

    def missing_listed(self, symbol: str, days: list[dt.date]) -> list[dt.date]:
        """``symbol``'s days among ``days`` that are not in the lake yet and that its
        security was listed on; the unlisted ones are recorded empty on the way."""
        missing = sync_ledger_with_files(self.store, self.lake, symbol, days, self.adopt)
        invalidate_months(self.lake, self.store, symbol, missing)
        self.report.missing_days += len(missing)
        known = self.stream.security_of(symbol)
        if known is not None and known.unlisted_days_known:
            unlisted = [day for day in missing if not known.life.covers(day)]
            if unlisted:
                self.publish_unlisted(symbol, unlisted)
                missing = [day for day in missing if known.life.covers(day)]
        return missing

    def publish_unlisted(self, symbol: str, days: list[dt.date]) -> None:
        """Record ``days`` as empty without asking: the security master says ``symbol``'s
        security was not listed then (before its listing, after its last session)."""
        ledger = LedgerBatch(self.store, self.report, self.lake)
        RunPublisher(ledger, self.lake, symbol, days, self.stream).finish()
        ledger.commit()
        logger.info(
            "%s: %d day(s) outside its listed life (%s..%s) recorded empty without a request",
            symbol,
            len(days),
            days[0],
            days[-1],
            extra={"event": "partition.unlisted", "symbol": symbol, "days": len(days)},
        )

    def doubtful(self, silent: Sequence[str]) -> tuple[str, ...]:
        """Those of ``silent`` (no bars in this ingest) the vendor may not know at all: no
        bars in the lake either, and no security the master knows."""
        return tuple(
            symbol
            for symbol in silent
            if not _has_bars(self.store, symbol) and self.stream.security_of(symbol) is None
        )

    def run_stream(self, symbols: tuple[str, ...], run: list[dt.date]) -> dict[str, ConnectorError]:
        """Fetch ``run`` for ``symbols`` in one paginated stream; return the symbols that
        failed: unknown to the vendor, or answered without bars on days it lists them.

        A symbol's days are published once a later symbol's bars arrive; a symbol with no
        bars waits for the end, so a typo is not recorded as a string of empty days.
        """
        ledger = LedgerBatch(self.store, self.report, self.lake)
        try:
            return self._stream(symbols, run, ledger)
        finally:
            ledger.commit()

    def _stream(
        self, symbols: tuple[str, ...], run: list[dt.date], ledger: LedgerBatch
    ) -> dict[str, ConnectorError]:
        expects = self.client.expects_bars
        publishers = {
            symbol: RunPublisher(ledger, self.lake, symbol, run, self.stream, expects)
            for symbol in symbols
        }
        position = {symbol: index for index, symbol in enumerate(symbols)}
        current = 0
        query = self.query(symbols, run)
        for table in self.client.fetch_batch(query):
            self.report.requests += 1
            parts = split_by_symbol(table)
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
        doubtful = self.doubtful(silent)
        unknown = self.client.unknown_symbols(doubtful, query) if doubtful else set()
        for symbol in symbols:
            if symbol not in unknown:
                publishers[symbol].finish()
        failed: dict[str, ConnectorError] = {
            symbol: unknown_symbol(symbol, len(run), self.client.vendor)
            for symbol in sorted(unknown)
        }
        for symbol in symbols:
            suspect = publishers[symbol].suspect_days
            if suspect:
                failed[symbol] = SuspectEmptyDays(symbol, self.client.vendor, suspect)
        return failed


def unknown_symbol(symbol: str, days: int, vendor: str) -> UnknownSymbolError:
    """The error of a symbol the vendor does not know."""
    return UnknownSymbolError(
        f"the vendor does not know {symbol}: no bars on any of {days} trading day(s), and "
        f"{vendor} says no such symbol; check the symbol in the config"
    )


class SuspectEmptyDays(ConnectorError):
    """The vendor answered without a single bar on days its reference data lists the symbol."""

    def __init__(self, symbol: str, vendor: str, days: Sequence[dt.date]) -> None:
        more = f" and {len(days) - 1} more" if len(days) > 1 else ""
        super().__init__(
            f"{vendor} answered no bars for {symbol} on {days[0]}{more}, although its "
            "reference data lists the ticker then; those days are not recorded as empty, and "
            "the next run asks again"
        )


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
    ``adopt`` is :func:`sync_ledger_with_files`'s.
    """
    ingest, symbols, days = begin_ingest(
        client, store, lake, symbols, days, stream, report, now, adopt
    )
    streams: dict[tuple[tuple[dt.date, ...], str], list[str]] = {}
    for symbol in symbols:
        missing = ingest.missing_listed(symbol, days)
        # A security asked for under its tickers' intervals (renamed, or a ticker another
        # company also used) streams alone.
        alone = symbol if stream.tickers_of(symbol) else ""
        for run in contiguous_runs(missing, days):
            streams.setdefault((tuple(run), alone), []).append(symbol)
    errors: dict[str, ConnectorError] = {}
    for (run, _), members in sorted(streams.items()):
        try:
            errors.update(ingest.run_stream(tuple(members), list(run)))
        except ConnectorError as error:
            if not may_differ_by_symbol(error):
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
    return ingest.report


def begin_ingest(
    client: BaseApiClient[BarsQuery],
    store: CheckpointStore,
    lake: LakeStore | Path,
    symbols: Sequence[str],
    days: list[dt.date],
    stream: StreamSettings,
    report: IngestReport | None,
    now: dt.datetime | None,
    adopt: bool,
) -> tuple[BarsIngest, tuple[str, ...], list[dt.date]]:
    """The start every bars ingest shares: ``days`` sorted and refused unless final at
    ``now`` (default: the clock's), ``symbols`` sorted, the report's plan set. Returns the
    ingest's state, the symbols and the days."""
    days = sorted(days)
    require_final(days, stream.finality, now if now is not None else clock.now())
    symbols = tuple(sorted(symbols))
    report = report or IngestReport(symbols=symbols)
    report.planned_days = len(days) * len(symbols)
    return BarsIngest(client, store, as_store(lake), stream, report, adopt), symbols, days


def require_final(days: list[dt.date], finality: Finality, now: dt.datetime) -> None:
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
    ingest: BarsIngest, symbols: list[str], run: list[dt.date], days: list[dt.date]
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
        missing = sync_ledger_with_files(ingest.store, ingest.lake, symbol, run, ingest.adopt)
        try:
            for part in contiguous_runs(missing, days):
                errors.update(ingest.run_stream((symbol,), part))
            failures_in_a_row = 0
        except ConnectorError as error:
            if not may_differ_by_symbol(error):
                raise
            errors[symbol] = error
            failures_in_a_row += 1
    return errors
