"""The configuration's data-set sections beside the bars: corporate actions, news, trades and
quotes, and the universe file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from marketpipe.connectors.models import Symbol


class CorporateActionsSettings(BaseModel):
    """Corporate actions (splits, dividends ...) stored beside the bars for adjusted reads."""

    model_config = ConfigDict(extra="forbid")

    fetch: bool = Field(
        True, description="Bring the configured symbols' corporate actions up to date each run"
    )
    recheck_days: int = Field(
        30,
        ge=0,
        le=3660,
        description="Ask the vendor again about actions processed in the last N days of the "
        "previous check: records can arrive late, and ratios get corrected",
    )


class NewsSettings(BaseModel):
    """News articles about the configured symbols, stored by New York day beside the bars."""

    model_config = ConfigDict(extra="forbid")

    fetch: bool = Field(
        True,
        description="Store the news of every final New York day of the range (Alpaca's, or "
        "Massive's with its keywords and insights)",
    )
    include_content: bool = Field(
        False, description="Also store each article's body (HTML); larger files"
    )
    recheck_days: int = Field(
        7,
        ge=0,
        le=365,
        description="Once per New York date, ask again about the news of the last N stored "
        "days and replace a day whose articles were updated or added (history in the ledger)",
    )


class TicksSettings(BaseModel):
    """Trades or quotes: every print of chosen symbols, one file per symbol and trading day."""

    model_config = ConfigDict(extra="forbid")

    fetch: bool = Field(
        False,
        description="Store every print of each final session (large: a liquid symbol's day of "
        "quotes is millions of rows)",
    )
    symbols: list[Symbol] | None = Field(
        None,
        description="Which of the configured symbols (default: all of them)",
    )


class UniverseSettings(BaseModel):
    """A point-in-time universe: who was a member when, from a CSV file."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(
        min_length=1,
        description="CSV of members: intervals (symbol,start,end; empty end = still a member) "
        "or snapshots (date,tickers: the full list from that date on); a path relative to "
        "the directory the workflow runs in",
    )
