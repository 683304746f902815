"""Reconciling securities, not strings: whether two lakes' symbols name the same security.

Two lakes of the same truth from two vendors give their securities different ids (a FIGI,
an Alpaca asset id), so what is compared is each symbol's history as both masters tell it:
its tickers in order, the day each rename took effect, and its delisting. A symbol one lake
keeps for Facebook and the other for a company that later took the ticker up is a
``security_differs`` difference, stamped at New York midnight of the first day the two
accounts part (the epoch when they differ only in the tickers' names).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa

from marketpipe.lake.objects import LakeStore
from marketpipe.lake.one_sided import DIFFERENCE_SCHEMA
from marketpipe.lake.securities import Security, read_securities, securities_of
from marketpipe.markettime.calendar import new_york_midnight

SECURITY_KINDS = ("security_differs",)
_EPOCH = dt.date(1970, 1, 1)


def history(security: Security) -> tuple[tuple[tuple[str, dt.date | None], ...], dt.date | None]:
    """The tickers in order, each with the day it took effect (the first: its own), and
    the delisting: what two vendors' accounts of one security agree on."""
    tickers = tuple(
        (interval.ticker, interval.valid_from if index else None)
        for index, interval in enumerate(security.intervals)
    )
    return tickers, security.delisted


def security_differences(
    store_a: LakeStore, store_b: LakeStore, wanted: Sequence[str] | None
) -> pa.Table:
    """A ``security_differs`` row for each symbol both masters know whose histories differ."""
    known = [securities_of(read_securities(store)) for store in (store_a, store_b)]
    symbols = sorted(set(known[0]) & set(known[1]) & set(wanted or known[0]))
    rows = []
    for symbol in symbols:
        a, b = history(known[0][symbol]), history(known[1][symbol])
        if a == b:
            continue
        days = {day for _, day in a[0]} ^ {day for _, day in b[0]}
        days |= {a[1], b[1]} if a[1] != b[1] else set()
        first = min((day for day in days if day is not None), default=_EPOCH)
        rows.append(
            {
                "symbol": symbol,
                "timestamp": new_york_midnight(first),
                "kind": "security_differs",
                "value_a": None,
                "value_b": None,
            }
        )
    return pa.Table.from_pylist(rows, schema=DIFFERENCE_SCHEMA)
