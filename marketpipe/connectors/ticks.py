"""Trades and quotes: the canonical tick rows, and Alpaca's ``/v2/stocks/trades`` and
``/v2/stocks/quotes`` (multi-symbol, ``page_token``, ``limit`` at most 10,000, ``feed``,
``asof``) on the shared transport.

Pages are parsed column by column into Arrow, so a day of millions of quotes streams page by
page: nothing holds more than one page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Protocol

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from marketpipe.connectors.alpaca import AlpacaDataClient, Feed
from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.models import Dataset, Symbol
from marketpipe.connectors.transport import RequestSpec
from marketpipe.markettime.timeutil import format_rfc3339

TICK_PAGE_LIMIT = 10_000  # Alpaca's largest trades or quotes page


class Trade(BaseModel):
    """One trade print; ``timestamp`` is the SIP time in UTC, to the nanosecond."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol = Field(description="Ticker, e.g. AAPL")
    timestamp: AwareDatetime = Field(description="When it printed, UTC (nanoseconds)")
    price: float = Field(description="Trade price")
    size: float = Field(description="Shares (fractional for some prints)")
    exchange: str = Field(description="Exchange code, e.g. V (IEX), Q (Nasdaq)")
    id: int = Field(description="The trade's id on its exchange")
    conditions: list[str] = Field(description="Sale condition codes, e.g. @ (regular), I (odd lot)")
    tape: str | None = Field(None, description="Tape: A (NYSE), B (Arca and others), C (Nasdaq)")


class Quote(BaseModel):
    """One national best bid and offer update; ``timestamp`` in UTC, to the nanosecond."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol = Field(description="Ticker, e.g. AAPL")
    timestamp: AwareDatetime = Field(description="When it was quoted, UTC (nanoseconds)")
    bid_price: float = Field(description="Best bid")
    bid_size: float = Field(description="Best bid's size (round lots as the vendor counts)")
    bid_exchange: str = Field(description="Exchange of the best bid")
    ask_price: float = Field(description="Best offer")
    ask_size: float = Field(description="Best offer's size")
    ask_exchange: str = Field(description="Exchange of the best offer")
    conditions: list[str] = Field(description="Quote condition codes, e.g. R (regular)")
    tape: str | None = Field(None, description="Tape: A, B or C")


TRADES = Dataset("trades", Trade)
QUOTES = Dataset("quotes", Quote)
TRADES_SCHEMA = TRADES.schema
QUOTES_SCHEMA = QUOTES.schema


class TicksQuery(BaseModel):
    """Which prints to fetch: symbols and an inclusive UTC time range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: tuple[Symbol, ...] = Field(min_length=1, description="Tickers to fetch")
    start: AwareDatetime = Field(description="First instant to include (UTC)")
    end: AwareDatetime = Field(description="Last instant to include (UTC)")
    feed: Feed = Field("sip", description="Data feed: sip, iex, boats or otc")
    asof: dt.date | None = Field(None, description="The symbol map's day (None: today)")

    @model_validator(mode="after")
    def _check_range(self) -> TicksQuery:
        if self.end < self.start:
            raise ValueError(
                f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})"
            )
        return self


# Alpaca's field names for each canonical column (symbol comes from the grouping).
_WIRE: dict[str, dict[str, str]] = {
    "trades": {
        "timestamp": "t",
        "price": "p",
        "size": "s",
        "exchange": "x",
        "id": "i",
        "conditions": "c",
        "tape": "z",
    },
    "quotes": {
        "timestamp": "t",
        "bid_price": "bp",
        "bid_size": "bs",
        "bid_exchange": "bx",
        "ask_price": "ap",
        "ask_size": "as",
        "ask_exchange": "ax",
        "conditions": "c",
        "tape": "z",
    },
}
_OPTIONAL = frozenset({"tape", "conditions"})


def ticks_table(kind: Literal["trades", "quotes"], groups: Any, where: str) -> pa.Table:
    """A canonical trades or quotes table from Alpaca's ``{symbol: [print, ...]}`` groups
    (structure only: fields present and convertible, timestamps with an offset)."""
    schema = TRADES_SCHEMA if kind == "trades" else QUOTES_SCHEMA
    wire = _WIRE[kind]
    if not isinstance(groups, dict):
        raise ResponseFormatError(f"{where}: expected a '{kind}' map of symbols")
    symbols: list[str] = []
    columns: dict[str, list[Any]] = {name: [] for name in wire}
    for symbol, rows in groups.items():
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise ResponseFormatError(f"{where}: {kind} for {symbol!r} are not a list")
        try:
            for name, field in wire.items():
                if name in _OPTIONAL:
                    columns[name].extend([row.get(field) for row in rows])
                else:
                    columns[name].extend([row[field] for row in rows])
        except KeyError as exc:
            raise ResponseFormatError(f"{where}: a {kind[:-1]} of {symbol} lacks {exc}") from None
        except (TypeError, AttributeError):
            raise ResponseFormatError(
                f"{where}: a {kind[:-1]} of {symbol} is not an object"
            ) from None
        symbols.extend([symbol] * len(rows))
    columns["conditions"] = [value or [] for value in columns["conditions"]]
    try:
        arrays = [pa.array(symbols, pa.string())]
        for field in list(schema)[1:]:
            values = columns[field.name]
            if field.name == "timestamp":
                arrays.append(pa.array(values, pa.string()).cast(field.type))
            else:
                arrays.append(pa.array(values, field.type))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResponseFormatError(f"{where}: {kind} have a malformed value: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


class _AlpacaTicksClient(AlpacaDataClient[TicksQuery]):
    """What the trades and quotes endpoints share."""

    kind: ClassVar[Literal["trades", "quotes"]]

    def build_request(self, query: TicksQuery, cursor: str | None) -> RequestSpec:
        """The request for ``query``, continuing at page token ``cursor``."""
        params = [
            ("symbols", ",".join(query.symbols)),
            ("start", format_rfc3339(query.start)),
            ("end", format_rfc3339(query.end)),
            ("limit", str(min(self.config.page_size, TICK_PAGE_LIMIT))),
            ("feed", query.feed),
        ]
        if query.asof is not None:
            params.append(("asof", query.asof.isoformat()))
        if cursor is not None:
            params.append(("page_token", cursor))
        return RequestSpec(
            path=f"/v2/stocks/{self.kind}", params=tuple(params), endpoint=f"stocks/{self.kind}"
        )

    def parse_page(self, page: Page, query: TicksQuery) -> pa.Table:
        """One page's prints as canonical rows."""
        payload = page.payload
        if not isinstance(payload, dict) or self.kind not in payload:
            raise ResponseFormatError(f"stocks/{self.kind} page {page.number}: no '{self.kind}'")
        return ticks_table(self.kind, payload[self.kind] or {}, f"{self.kind} page {page.number}")


class AlpacaTradesClient(_AlpacaTicksClient):
    """Alpaca's historical trades (``GET /v2/stocks/trades``)."""

    dataset = TRADES
    kind = "trades"


class AlpacaQuotesClient(_AlpacaTicksClient):
    """Alpaca's historical quotes (``GET /v2/stocks/quotes``)."""

    dataset = QUOTES
    kind = "quotes"


class TicksClient(Protocol):
    """What fetching a tick day needs of a vendor's trades or quotes client."""

    vendor: ClassVar[str]
    kind: ClassVar[Literal["trades", "quotes"]]

    def fetch_batch(self, query: TicksQuery) -> Iterator[pa.Table]:
        """The query's rows, a table per page."""
        ...
