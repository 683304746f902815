"""The security master: which security each of the lake's symbols names, under which tickers.

``<data_dir>/securities/securities.parquet`` holds one row per symbol of the lake and ticker
interval of the security it names: a stable ``security_id`` (the vendor's composite FIGI when
it has one, else ``TICKER@first-date``), the ``ticker`` used from ``valid_from`` through
``valid_to`` (empty: still in use), the security's ``listed`` and ``delisted`` dates
(``delisted`` is the first day it no longer traded), its ``name``, and where the facts came
from: ``vendor``, ``endpoint`` and the New York day they were first ``asked_on``. The file is
small, rewritten whole and atomically when a fact changes, with the same bytes for the same
facts, and is read like any other lake file (also on S3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors.models import TradedAs
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.read_plan import Series
from marketpipe.lake.storage import (
    Output,
    WrittenFile,
    as_output,
    as_store,
    parquet_bytes,
    read_table_at,
)
from marketpipe.lake.universe import read_membership
from marketpipe.markettime.spans import EVERY_DAY, NO_DAY, DaySpan, DaySpans

SECURITIES_KEY = "securities/securities.parquet"
SECURITIES_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("security_id", pa.string(), nullable=False),
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("valid_from", pa.date32()),
        pa.field("valid_to", pa.date32()),
        pa.field("listed", pa.date32()),
        pa.field("delisted", pa.date32()),
        pa.field("name", pa.string()),
        pa.field("vendor", pa.string(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("asked_on", pa.date32(), nullable=False),
    ]
)

Lake = LakeStore | Path | str
_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class TickerInterval:
    """One row of the master: ``symbol`` names ``security_id``, which traded as ``ticker``
    from ``valid_from`` through ``valid_to``."""

    symbol: str
    security_id: str
    ticker: str
    valid_from: dt.date | None
    valid_to: dt.date | None
    listed: dt.date | None
    delisted: dt.date | None
    name: str | None
    vendor: str
    endpoint: str
    asked_on: dt.date

    def fact(self) -> tuple[object, ...]:
        """Everything but when it was asked: two rows with one fact say the same."""
        return tuple(getattr(self, item.name) for item in fields(self) if item.name != "asked_on")


@dataclass(frozen=True)
class Security:
    """What the lake knows of the security one of its symbols names."""

    symbol: str
    security_id: str
    intervals: tuple[TickerInterval, ...]

    @property
    def listed(self) -> dt.date | None:
        """Its first session, if the vendor said."""
        return self.intervals[0].listed

    @property
    def delisted(self) -> dt.date | None:
        """The first day it no longer traded, if it was delisted."""
        return self.intervals[0].delisted

    @property
    def name(self) -> str | None:
        """The company's name, as the vendor gave it."""
        return self.intervals[-1].name

    def trades_on(self, day: dt.date) -> bool:
        """Whether it was listed on ``day`` (as far as the vendor said)."""
        return (self.listed is None or self.listed <= day) and (
            self.delisted is None or day < self.delisted
        )

    def ticker_on(self, day: dt.date) -> str | None:
        """The ticker it traded under on ``day``, or ``None`` outside its tickers' intervals."""
        for interval in self.intervals:
            if (interval.valid_from is None or interval.valid_from <= day) and (
                interval.valid_to is None or day <= interval.valid_to
            ):
                return interval.ticker
        return None

    def tickers(self) -> list[str]:
        """Every ticker it used, oldest first."""
        return list(dict.fromkeys(interval.ticker for interval in self.intervals))

    @property
    def renamed(self) -> bool:
        """Whether it traded under a ticker other than its symbol."""
        return any(interval.ticker != self.symbol for interval in self.intervals)

    @property
    def plain(self) -> bool:
        """Whether its symbol was its only ticker, with no bounds the vendor told: its bars
        are asked for under the symbol on every day."""
        return all(
            interval.ticker == self.symbol
            and interval.valid_from is None
            and interval.valid_to is None
            for interval in self.intervals
        )

    def traded_as(self) -> tuple[TradedAs, ...]:
        """Its tickers and the days it used each, oldest first, as a bars query takes them."""
        return tuple(
            TradedAs(ticker=interval.ticker, first=interval.valid_from, last=interval.valid_to)
            for interval in self.intervals
        )

    def life(self) -> DaySpan:
        """The days it was listed: from its listing through its last session."""
        last = self.delisted - _ONE_DAY if self.delisted is not None else None
        return DaySpan(self.listed, last)

    def status(self, today: dt.date) -> str:
        """``active``, ``delisted on D``, or ``listed on D`` for a listing still to come."""
        if self.delisted is not None and self.delisted <= today:
            return f"delisted on {self.delisted.isoformat()}"
        if self.listed is not None and self.listed > today:
            return f"listed on {self.listed.isoformat()}"
        return "active"


def series_resolver(lake: Lake) -> Callable[[str], list[Series]]:
    """How a read resolves a name through the lake's security master and universe (see
    :func:`series_of`); without either every name is its own symbol on every day."""
    known = securities_of(read_securities(lake))
    membership = read_membership(lake)
    if not known and not membership:
        return Series.plain
    return lambda name: series_of(name, known, membership)


def series_of(
    name: str, known: dict[str, Security], membership: Mapping[str, DaySpans]
) -> list[Series]:
    """What a read of ``name`` opens. A symbol of the lake reads its own files, and only
    its universe membership while its security was listed must be there (a read wider than
    a delisting returns the listed days; a reused ticker's other company is never mixed
    in). Another name reads, for the days a lake security traded under it, that security's
    files (``FB`` in 2021 reads ``META``'s), and is its own (missing) on the rest."""
    own, member = known.get(name), membership.get(name)
    if own is not None or member is not None:
        required = member if member is not None else EVERY_DAY
        if own is not None:
            required = required.within(own.life())
        return [Series(name, name, EVERY_DAY, required)]
    series, taken = [], NO_DAY
    for symbol, security in known.items():
        used = DaySpans.of(
            span
            for interval in security.intervals
            if interval.ticker == name
            and (span := DaySpan(interval.valid_from, interval.valid_to).overlap(security.life()))
        ).without(taken)
        if used.spans:
            series.append(Series(name, symbol, used))
            taken = DaySpans.of([*taken.spans, *used.spans])
    rest = EVERY_DAY.without(taken)
    return [*series, Series(name, name, rest)] if rest.spans else series


def securities_table(intervals: Iterable[TickerInterval]) -> pa.Table:
    """The master's rows as a table in the file's order: by symbol, then oldest ticker first
    (a ticker whose start the vendor did not tell comes first)."""
    ordered = sorted(
        intervals, key=lambda row: (row.symbol, row.valid_from or dt.date.min, row.ticker)
    )
    rows = [{item.name: getattr(row, item.name) for item in fields(row)} for row in ordered]
    return pa.Table.from_pylist(rows, schema=SECURITIES_SCHEMA)


def intervals_of(table: pa.Table) -> list[TickerInterval]:
    """The rows of a master table."""
    return [TickerInterval(**row) for row in table.cast(SECURITIES_SCHEMA).to_pylist()]


def securities_of(intervals: Sequence[TickerInterval]) -> dict[str, Security]:
    """Each symbol's security, its intervals oldest first."""
    grouped: dict[str, list[TickerInterval]] = {}
    for interval in intervals:
        grouped.setdefault(interval.symbol, []).append(interval)
    return {
        symbol: Security(
            symbol,
            rows[0].security_id,
            tuple(sorted(rows, key=lambda row: (row.valid_from or dt.date.min, row.ticker))),
        )
        for symbol, rows in sorted(grouped.items())
    }


def with_fresh_facts(
    stored: Sequence[TickerInterval], fresh: Sequence[TickerInterval], symbols: Iterable[str]
) -> list[TickerInterval]:
    """The master after asking the vendor about ``symbols`` again: their rows are ``fresh``,
    keeping the day a fact was first asked for facts that did not change; other symbols'
    rows stay as they are."""
    asked = set(symbols)
    first_asked = {row.fact(): row.asked_on for row in stored}
    kept = [row for row in stored if row.symbol not in asked]
    renewed = [
        replace(row, asked_on=first_asked.get(row.fact(), row.asked_on))
        for row in fresh
        if row.symbol in asked
    ]
    return kept + renewed


def securities_bytes(intervals: Iterable[TickerInterval]) -> bytes:
    """The master file's bytes: the same facts always give the same bytes."""
    return parquet_bytes(securities_table(intervals), {})


def read_securities(lake: Lake) -> list[TickerInterval]:
    """The master's rows (none when the lake has no master yet)."""
    try:
        return intervals_of(read_master(lake))
    except NoSecurityMasterError:
        return []


def publish_securities(
    lake: Lake, intervals: Iterable[TickerInterval], current_sha256: str | None = None
) -> tuple[WrittenFile, bool]:
    """Publish the master atomically unless the file already holds these bytes; returns the
    file and whether it changed."""
    rows = list(intervals)
    data = securities_bytes(rows)
    written = WrittenFile(SECURITIES_KEY, len(rows), hashlib.sha256(data).hexdigest())
    if written.sha256 == current_sha256:
        return written, False
    as_store(lake).put(SECURITIES_KEY, data, crash_point_name="parquet_write")
    return written, True


class NoSecurityMasterError(LookupError):
    """The lake has no security master yet: a run of the workflow builds it."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"{where} has no security master yet ({SECURITIES_KEY}): a run of the workflow "
            "(snakemake, or marketpipe update) builds it"
        )


def read_master(lake: Lake) -> pa.Table:
    """The master file's table, or :class:`NoSecurityMasterError`."""
    store = as_store(lake)
    if not store.exists(SECURITIES_KEY):
        raise NoSecurityMasterError(store.uri)
    return read_table_at(store, SECURITIES_KEY).cast(SECURITIES_SCHEMA)


def securities(
    symbols: str | Sequence[str] | None = None,
    *,
    data_dir: Path | str = "data",
    output: Output = "arrow",
) -> Any:
    """The lake's security master: for each of ``symbols`` (``None``: every symbol of the
    lake) the security it names, one row per ticker it traded under (``security_id``,
    ``ticker``, ``valid_from``, ``valid_to``, ``listed``, ``delisted``, ``name``, and the
    ``vendor``, ``endpoint`` and day ``asked_on`` each fact came from); ``output`` is
    ``arrow``, ``pandas`` or ``polars``."""
    table = read_master(data_dir)
    if symbols is not None:
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        table = table.filter(pc.is_in(table["symbol"], pa.array(wanted, pa.string())))
    return as_output(table, output)
