"""The securities the simulator serves in the securities tests: FB became META on
2022-06-09, TWTR's last session was 2022-10-27 (a cash takeover at 54.20), ARM listed on
2023-09-14, and an invented later company takes up the ticker FB gave up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from marketpipe.simulator import SimulatorServer
from tests.conftest import start_simulator

TODAY = dt.datetime(2026, 12, 1, 15, tzinfo=dt.UTC)
META_FIGI = "BBG000MM2P62"
SECURITIES: tuple[dict[str, Any], ...] = (
    {
        "name": "Meta Platforms, Inc.",
        "tickers": {"FB": "2012-05-18", "META": "2022-06-09"},
        "figi": META_FIGI,
    },
    {
        "name": "Twitter, Inc.",
        "tickers": {"TWTR": "2013-11-07"},
        "delisted": "2022-10-27",
        "cash_per_share": 54.2,
    },
    {"name": "Arm Holdings plc", "tickers": {"ARM": "2023-09-14"}},
    # Invented: a later company taking up the ticker FB gave up, as reused tickers do.
    {"name": "Second FB Corp.", "tickers": {"FB": "2023-03-01"}},
)


def securities_simulator() -> Iterator[SimulatorServer]:
    """A simulator serving :data:`SECURITIES` at :data:`TODAY` (NOPE is unknown to it),
    stopped when the generator is closed; a module fixture yields from it."""
    simulator = start_simulator(
        market_now=TODAY,
        securities=SECURITIES,
        corporate_actions=(),
        unknown_symbols=frozenset({"NOPE"}),
    )
    try:
        yield simulator
    finally:
        simulator.stop()
