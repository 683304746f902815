"""The simulator's settings as the workflow config names them (``demo:``), and what they start."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marketpipe.markettime.timeutil import dates_as_text
from marketpipe.simulator.actions import ActionBook, ungrouped_records
from marketpipe.simulator.api import SimulatorConfig
from marketpipe.simulator.faults import FAULT_KINDS, FaultConfig
from marketpipe.simulator.market import BAD_BAR_KINDS, DEFAULT_OUTSIDE_RANGE_RATE
from marketpipe.simulator.securities import SecurityBook


def _known_kinds(value: dict[str, float], kinds: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(value) - set(kinds))
    if unknown:
        raise ValueError(f"unknown {what} kind(s) {unknown}; choose from {list(kinds)}")
    return value


# The demo market's ticker history: a real rename inside the quickstart's range.
DEMO_SECURITIES: tuple[dict[str, Any], ...] = (
    {"name": "Dayforce, Inc.", "tickers": {"CDAY": "2018-04-26", "DAY": "2024-02-01"}},
)


class DemoSettings(BaseModel):
    """The bundled simulator used by ``vendor: demo``; faults are for testing."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the synthetic market")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="The simulator's own per-key limit; 0 = none"
    )
    faults: dict[str, float] = Field(
        default_factory=dict, description=f"Fault rates by kind: {', '.join(FAULT_KINDS)}"
    )
    fail_symbols: dict[str, int] = Field(
        default_factory=dict, description="Symbols whose requests always fail, with the status"
    )
    bad_bars: dict[str, float] = Field(
        default_factory=dict, description=f"Malformed-bar rates by kind: {', '.join(BAD_BAR_KINDS)}"
    )
    listings: dict[str, dt.date] = Field(
        default_factory=dict, description="Symbols' first trading days (no bars before)"
    )
    unknown_symbols: list[str] = Field(
        default_factory=list, description="Tickers the simulator does not know"
    )
    corrections: dict[str, list[dt.date]] = Field(
        default_factory=dict,
        description="Sessions whose bars the simulated vendor corrected after the fact "
        "(a late cancel), by symbol: what `marketpipe refresh` is for",
    )
    news_window: Literal["created_at", "updated_at"] = Field(
        "created_at",
        description="Which article time the news endpoint's start/end select on (the real "
        "API's is unconfirmed; MarketPipe stores news right under either)",
    )
    plan: Literal["paid", "free"] = Field(
        "paid",
        description="The simulated subscription: free refuses SIP data of the last 15 minutes "
        "(HTTP 403) and /latest with feed=sip, as Alpaca's free plan does",
    )
    outside_range_rate: float = Field(
        DEFAULT_OUTSIDE_RANGE_RATE,
        ge=0,
        le=1,
        description="Share of bars whose open or close lies outside [low, high], as real bars can",
    )
    corporate_actions: dict[str, list[dict[str, Any]]] | None = Field(
        None,
        description="The simulated vendor's corporate actions, in Alpaca's response shape "
        "({forward_splits: [{id, symbol, old_rate, new_rate, ex_date, process_date, ...}], "
        "cash_dividends: [...]}); they move its raw bars and drive its adjusted bars. "
        "Default: the demo market's (an AAPL split and dividends of AAPL, MSFT and SPY)",
    )

    securities: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(record) for record in DEMO_SECURITIES],
        description="Securities with a ticker history: [{name, tickers: {FB: 2012-05-18, "
        "META: 2022-06-09}, delisted: last session (optional), figi (optional)}]; Alpaca's "
        "bars map a ticker to its security by asof, Polygon's serve it as traded. Default: "
        "the demo market's (Ceridian's CDAY became Dayforce's DAY on 2024-02-01)",
    )

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_kinds(value, FAULT_KINDS, "fault")

    @field_validator("bad_bars")
    @classmethod
    def _check_bad_bars(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_kinds(value, BAD_BAR_KINDS, "bad-bar")

    @field_validator("securities")
    @classmethod
    def _check_securities(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        SecurityBook.from_records(value)
        return value

    @field_validator("corporate_actions")
    @classmethod
    def _check_actions(
        cls, value: dict[str, list[dict[str, Any]]] | None
    ) -> dict[str, list[dict[str, Any]]] | None:
        if value is not None:
            ActionBook(ungrouped_records(dates_as_text(value)))
        return value

    def simulator_config(
        self, rate_window_seconds: float, listed: Iterable[str] = ()
    ) -> SimulatorConfig:
        """The simulator these settings ask for, counting requests over ``rate_window_seconds``
        and listing the tickers ``listed`` among its assets (a workflow's symbols)."""
        return SimulatorConfig(
            seed=self.seed,
            listed_tickers=frozenset(listed),
            rate_limit_per_minute=self.rate_limit_per_minute,
            rate_limit_window_seconds=rate_window_seconds,
            faults=FaultConfig(
                seed=self.seed, rates=dict(self.faults), fail_symbols=dict(self.fail_symbols)
            ),
            bad_bars=dict(self.bad_bars),
            listings=dict(self.listings),
            unknown_symbols=frozenset(self.unknown_symbols),
            outside_range_rate=self.outside_range_rate,
            corrections=frozenset(
                (symbol, day) for symbol, days in self.corrections.items() for day in days
            ),
            plan=self.plan,
            news_window=self.news_window,
            securities=tuple(self.securities),
            **(
                {}
                if self.corporate_actions is None
                else {"corporate_actions": ungrouped_records(self.corporate_actions)}
            ),
        )
