"""Canonical, vendor-neutral row models and the Arrow schemas derived from them."""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pyarrow as pa
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

_SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?$")


def check_symbol(value: str) -> str:
    """Accept exchange tickers like ``AAPL`` or ``BRK.B``; reject anything path-like."""
    if not isinstance(value, str) or not _SYMBOL_PATTERN.match(value):
        raise ValueError(
            f"symbol {value!r} is not a valid ticker: use upper-case letters and digits, "
            "optionally one class suffix such as BRK.B"
        )
    return value


Symbol = Annotated[
    str,
    AfterValidator(check_symbol),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _SYMBOL_PATTERN.pattern,
            "description": "Ticker such as AAPL or BRK.B (upper case)",
        }
    ),
]


class TradedAs(BaseModel):
    """A ticker a security traded under, from ``first`` through ``last`` (New York days;
    ``None``: since or until whenever the vendor did not say)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticker: Symbol
    first: dt.date | None = None
    last: dt.date | None = None

    def covers(self, day: dt.date) -> bool:
        """Whether the security traded under this ticker on ``day``."""
        return (self.first is None or self.first <= day) and (self.last is None or day <= self.last)


def ticker_on(traded_as: Sequence[TradedAs], symbol: str, day: dt.date) -> str:
    """The ticker ``symbol``'s security traded under on ``day``: from ``traded_as`` (the
    nearest interval when ``day`` falls outside them all), else the symbol itself."""
    if not traded_as:
        return symbol
    for span in traded_as:
        if span.covers(day):
            return span.ticker
    before = [span for span in traded_as if span.first is None or span.first <= day]
    return (before[-1] if before else traded_as[0]).ticker


class OHLCVBar(BaseModel):
    """One bar of the canonical OHLCV data set; ``timestamp`` is the bar's start in UTC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Symbol = Field(description="Ticker, e.g. AAPL")
    timestamp: AwareDatetime = Field(description="Bar start, UTC")
    open: float = Field(description="First trade price in the bar")
    high: float = Field(description="Highest trade price in the bar")
    low: float = Field(description="Lowest trade price in the bar")
    close: float = Field(description="Last trade price in the bar")
    volume: float = Field(description="Traded volume (shares; fractional for some assets)")
    trade_count: int | None = Field(None, description="Number of trades, if the vendor says")
    vwap: float | None = Field(None, description="Volume-weighted average price, if known")

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)


_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    float: pa.float64(),
    int: pa.int64(),
    bool: pa.bool_(),
    dt.datetime: pa.timestamp("ns", tz="UTC"),
    AwareDatetime: pa.timestamp("ns", tz="UTC"),
    dt.date: pa.date32(),
}


def _arrow_type(annotation: Any) -> pa.DataType:
    """Scalars by ``_ARROW_TYPES``; ``list[X]`` as a list; a nested model as a struct."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(_arrow_type(item))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(
            [_arrow_field(name, info.annotation) for name, info in annotation.model_fields.items()]
        )
    return _ARROW_TYPES[annotation]


def _arrow_field(name: str, annotation: Any) -> pa.Field:
    # pydantic has already stripped Annotated[...] from field annotations.
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        (annotation,) = members
    return pa.field(name, _arrow_type(annotation), nullable=nullable)


def arrow_schema(model: type[BaseModel], dataset: str) -> pa.Schema:
    """The Arrow schema of a row model: one column per field, in declaration order."""
    return pa.schema(
        [_arrow_field(name, info.annotation) for name, info in model.model_fields.items()],
        metadata={b"marketpipe.dataset": dataset.encode()},
    )


@dataclass(frozen=True)
class Dataset:
    """A kind of data a vendor can deliver (bars, news, fundamentals ...)."""

    name: str
    row_model: type[BaseModel]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema every vendor's parsed pages must have."""
        return arrow_schema(self.row_model, self.name)


OHLCV = Dataset("ohlcv", OHLCVBar)
OHLCV_SCHEMA = OHLCV.schema


def labelled_rows(table: pa.Table, symbol: str) -> pa.Table:
    """``table``'s rows under ``symbol`` (rows asked for under another ticker)."""
    index = table.schema.get_field_index("symbol")
    column = pa.array([symbol] * table.num_rows, pa.string())
    return table.set_column(index, table.schema.field(index), column)


class CorporateAction(BaseModel):
    """One corporate action (split, dividend, spin-off, name change ...) of one symbol.

    ``type`` is the vendor's kind in singular (``forward_split``, ``cash_dividend`` ...);
    kinds MarketPipe does not interpret are kept too, with the record as received in ``raw``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="The vendor's id of the action")
    type: str = Field(min_length=1, description="Kind, e.g. forward_split or cash_dividend")
    symbol: str = Field(min_length=1, description="The symbol the action applies to")
    process_date: dt.date = Field(description="When the vendor processed it")
    ex_date: dt.date | None = Field(None, description="Ex-date (or effective date)")
    record_date: dt.date | None = Field(None, description="Record date, if any")
    payable_date: dt.date | None = Field(None, description="Payable date, if any")
    old_rate: float | None = Field(None, description="Shares before (splits, spin-off source)")
    new_rate: float | None = Field(None, description="Shares after (splits, spin-off new)")
    rate: float | None = Field(None, description="Cash per share or stock-dividend rate")
    new_symbol: str | None = Field(None, description="Symbol after a rename, or spun off")
    raw: str = Field(description="The record as the vendor sent it (JSON)")


CORPORATE_ACTIONS = Dataset("corporate_actions", CorporateAction)
CORPORATE_ACTIONS_SCHEMA = CORPORATE_ACTIONS.schema


class NewsImage(BaseModel):
    """One image of a news article: its size label (``large``, ``small``, ``thumb``) and URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: str = Field(description="Size label, e.g. large or thumb")
    url: str = Field(description="Where the image is")


class NewsArticle(BaseModel):
    """One news article as the vendor last published it; ``id`` identifies it across versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0, description="The vendor's article id")
    created_at: AwareDatetime = Field(description="When the article was first published, UTC")
    updated_at: AwareDatetime = Field(description="When this version was published, UTC")
    headline: str = Field(min_length=1, description="Headline")
    summary: str = Field(description="Summary (often empty)")
    author: str = Field(description="Author (may be empty)")
    source: str = Field(description="Publisher, e.g. benzinga")
    url: str = Field(description="The article's web address (may be empty)")
    symbols: list[str] = Field(description="Tickers the article is about (may be empty)")
    images: list[NewsImage] = Field(description="Images (often none)")
    content: str = Field(description="Body (HTML), empty unless asked for with include_content")
    raw: str | None = Field(
        None,
        description="The record as sent, when the vendor says more than these columns hold "
        "(Massive: its id, keywords, insights, publisher; JSON); None for Alpaca",
    )

    @field_validator("created_at", "updated_at")
    @classmethod
    def _to_utc(cls, value: dt.datetime) -> dt.datetime:
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _check_versions(self) -> NewsArticle:
        if self.updated_at < self.created_at:
            raise ValueError(
                f"updated_at ({self.updated_at}) is before created_at ({self.created_at})"
            )
        return self


NEWS = Dataset("news", NewsArticle)
NEWS_SCHEMA = NEWS.schema
