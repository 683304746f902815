"""A stream of bars: its provenance (vendor, timeframe, feed, adjustment) and what ingesting did."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from marketpipe.connectors import ConnectorError
from marketpipe.connectors.models import TradedAs
from marketpipe.lake.ledger import LedgerEntry, StreamKey
from marketpipe.lake.storage import (
    ADJUSTMENT_KEY,
    DAY_KEY,
    SYMBOL_KEY,
)
from marketpipe.markettime.finality import DEFAULT_SETTLE_MINUTES, Finality
from marketpipe.markettime.spans import DaySpan
from marketpipe.markettime.timeframe import Timeframe


@dataclass(frozen=True)
class KnownSecurity:
    """What the security master says of a symbol's security, as its bars stream needs it."""

    traded_as: tuple[TradedAs, ...] = ()  # empty: its symbol on every day
    life: DaySpan = field(default_factory=DaySpan)  # its listing through its last session

    @property
    def unlisted_days_known(self) -> bool:
        """Whether the master bounds its life (a listing or delisting date)."""
        return self.life != DaySpan()


@dataclass(frozen=True)
class StreamSettings:
    """What the bars are: vendor, timeframe, feed and adjustment (the file provenance)."""

    vendor: str
    timeframe: Timeframe
    feed: str
    adjustment: str
    settle: dt.timedelta = dt.timedelta(minutes=DEFAULT_SETTLE_MINUTES)
    # Alpaca's asof: the day whose symbol map names each symbol's security (None: today's).
    asof: dt.date | None = None
    # What the security master says of the symbols' securities (none: nothing known).
    securities: tuple[tuple[str, KnownSecurity], ...] = ()

    def security_of(self, symbol: str) -> KnownSecurity | None:
        """What the security master says of ``symbol``'s security, if anything."""
        return dict(self.securities).get(symbol)

    def tickers_of(self, symbol: str) -> tuple[TradedAs, ...]:
        """The tickers ``symbol``'s security traded under, when not just its own throughout."""
        known = self.security_of(symbol)
        return known.traded_as if known is not None else ()

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
            "marketpipe.timeframe": str(self.timeframe),
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

    @property
    def common_cause(self) -> str | None:
        """The one error every failed symbol met (an outage, refused keys), else ``None``."""
        causes = {str(error) for error in self.errors.values()}
        return causes.pop() if len(causes) == 1 else None


@dataclass
class IngestReport:
    """What one ingest call did; day counts are partitions (symbol-days)."""

    symbols: tuple[str, ...]
    planned_days: int = 0
    missing_days: int = 0
    requests: int = 0
    files_read: int = 0  # bulk (flat) files read, one per day for every symbol
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
