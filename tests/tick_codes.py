"""Alpaca-format tick rows in Massive's codes, as the simulator's two faces serve one print."""

from __future__ import annotations

from typing import Any

from marketpipe.simulator.polygon_ticks import CONDITION_IDS, EXCHANGE_IDS


def in_massive_codes(row: dict[str, Any]) -> dict[str, Any]:
    """An Alpaca-format row with Massive's exchange and condition IDs, as its API sends them."""
    coded = dict(row)
    for name in ("exchange", "bid_exchange", "ask_exchange"):
        if name in coded:
            coded[name] = str(EXCHANGE_IDS[coded[name]])
    if "exchange" in coded:  # trades: a regular print carries no condition there
        coded["conditions"] = [str(CONDITION_IDS[c]) for c in row["conditions"] if c != "@"]
    else:
        coded["conditions"] = []
    return coded
