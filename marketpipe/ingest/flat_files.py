"""Bulk backfill from the vendor's flat files: each day's file read once for every symbol.

A day's flat file holds every US stock's minute bars (see
:mod:`marketpipe.connectors.flat_files`). It is read once, streaming, and split into the day
partitions of the symbols that miss that day, each under the ticker its security traded as
then. Every partition passes the same validation, quarantine, atomic write and ledger commit
as one built from REST pages, and the file's ETag is recorded for it, so that
``marketpipe refresh`` re-reads only the files the vendor replaced. A day whose file is not
published yet (files are ready the next morning) is fetched from the REST API instead.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from marketpipe.connectors import BarsQuery, BaseApiClient, ConnectorError
from marketpipe.connectors.flat_files import DayFile, FlatFilesClient
from marketpipe.connectors.models import TradedAs, labelled_rows
from marketpipe.ingest.bars import (
    BarsIngest,
    SuspectEmptyDays,
    begin_ingest,
    ingest_days,
    split_by_symbol,
    unknown_symbol,
)
from marketpipe.ingest.publish import LedgerBatch, RunPublisher
from marketpipe.ingest.stream import IngestReport, StreamSettings, SymbolsFailed
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import LakeStore
from marketpipe.markettime import clock

logger = logging.getLogger(__name__)


def ingest_flat_files(
    files: FlatFilesClient,
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
    """Publish whichever of ``days`` are missing for ``symbols``, one flat file per day.

    ``client`` (the vendor's REST client) answers the days whose file is not published yet
    and the reference questions (is a silent symbol known at all, was it listed on a day
    without bars). Raises :class:`SymbolsFailed` naming the symbols that failed, after
    publishing the others; ``report`` keeps the progress made before an exception.
    """
    now = now if now is not None else clock.now()
    ingest, symbols, days = begin_ingest(
        client, store, lake, symbols, days, stream, report, now, adopt
    )
    wanted: dict[dt.date, list[str]] = {}
    for symbol in symbols:
        for day in ingest.missing_listed(symbol, days):
            wanted.setdefault(day, []).append(symbol)
    splitter = _DaySplitter(files, ingest)
    unpublished = [day for day in sorted(wanted) if not splitter.publish_day(day, wanted[day])]
    errors = splitter.finish(days)
    if unpublished:
        logger.info(
            "%d day(s) have no flat file yet (%s..%s): fetched from the REST API",
            len(unpublished),
            unpublished[0],
            unpublished[-1],
            extra={"event": "flat_files.unpublished", "days": len(unpublished)},
        )
        later = sorted({symbol for day in unpublished for symbol in wanted[day]})
        rest = IngestReport(symbols=tuple(later))
        try:
            ingest_days(client, store, ingest.lake, later, unpublished, stream, rest, now, adopt)
        except SymbolsFailed as failed:
            errors.update(failed.errors)
        finally:
            ingest.report.requests += rest.requests
            ingest.report.published.extend(rest.published)
    if errors:
        raise SymbolsFailed(dict(sorted(errors.items())))
    return ingest.report


@dataclass
class _DaySplitter:
    """Splits day files into partitions; remembers the symbols a file had no bars of."""

    files: FlatFilesClient
    ingest: BarsIngest
    silent: dict[str, list[dt.date]] = field(default_factory=dict)
    received: set[str] = field(default_factory=set)

    def publish_day(self, day: dt.date, symbols: list[str]) -> bool:
        """Publish ``symbols``' partitions of ``day`` from its file; ``False`` when the
        file is not published yet (nothing is recorded then)."""
        by_ticker: dict[str, list[str]] = {}
        untraded = []
        for symbol in symbols:
            ticker = _ticker_on(self.ingest.stream.tickers_of(symbol), symbol, day)
            if ticker is None:
                untraded.append(symbol)
            else:
                by_ticker.setdefault(ticker, []).append(symbol)
        day_file = self.files.read_day(day, by_ticker) if by_ticker else None
        if by_ticker and day_file is None:
            return False
        self.ingest.report.files_read += int(day_file is not None)
        for symbol in untraded:
            self.silent.setdefault(symbol, []).append(day)
        if day_file is not None:
            self._split(day_file, by_ticker)
        return True

    def _split(self, day_file: DayFile, by_ticker: dict[str, list[str]]) -> None:
        ingest = self.ingest
        ledger = LedgerBatch(ingest.store, ingest.report, ingest.lake)
        parts = dict(split_by_symbol(day_file.bars))
        published = []
        for ticker, symbols in by_ticker.items():
            part = parts.get(ticker)
            for symbol in symbols:
                if part is None:
                    self.silent.setdefault(symbol, []).append(day_file.day)
                    continue
                publisher = RunPublisher(ledger, ingest.lake, symbol, [day_file.day], ingest.stream)
                # A file names the rows by the ticker as traded that day.
                publisher.add_page(part if ticker == symbol else labelled_rows(part, symbol))
                publisher.finish()
                self.received.add(symbol)
                published.append((symbol, day_file.day))
        ledger.commit()
        ingest.store.record_sources(day_file.key, day_file.etag, published)

    def finish(self, days: list[dt.date]) -> dict[str, ConnectorError]:
        """Record the days the files had no bars of as empty, unless the vendor does not
        know the symbol at all or lists it on that day; return those failures."""
        ingest = self.ingest
        never = sorted(symbol for symbol in self.silent if symbol not in self.received)
        doubtful = ingest.doubtful(never)
        query = ingest.query(doubtful, days) if doubtful else None
        unknown = ingest.client.unknown_symbols(doubtful, query) if query else set()
        errors: dict[str, ConnectorError] = {
            symbol: unknown_symbol(symbol, len(self.silent[symbol]), ingest.client.vendor)
            for symbol in sorted(unknown)
        }
        ledger = LedgerBatch(ingest.store, ingest.report, ingest.lake)
        for symbol, silent_days in sorted(self.silent.items()):
            if symbol in unknown:
                continue
            publisher = RunPublisher(
                ledger,
                ingest.lake,
                symbol,
                sorted(silent_days),
                ingest.stream,
                ingest.client.expects_bars,
            )
            publisher.finish()
            if publisher.suspect_days:
                errors[symbol] = SuspectEmptyDays(
                    symbol, ingest.client.vendor, publisher.suspect_days
                )
        ledger.commit()
        return errors


def _ticker_on(traded_as: tuple[TradedAs, ...], symbol: str, day: dt.date) -> str | None:
    """The ticker ``symbol``'s security traded as on ``day`` (``None``: under none)."""
    if not traded_as:
        return symbol
    return next((span.ticker for span in traded_as if span.covers(day)), None)
