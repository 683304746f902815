"""Reconciling corporate actions: whether two lakes would adjust their bars alike.

What moves an adjusted read is each split's ratio and each cash dividend's amount, by
ex-date; vendors' ids, processing dates and other kinds (name changes, mergers) are their
own and are not compared. For every symbol both lakes keep actions for, a split or cash
dividend one lake has and the other lacks is a ``split_missing_in_a``/``_b`` or
``dividend_missing_in_a``/``_b`` difference (its value: the ratio or amount), and one both
have with another ratio or amount a ``split_ratio`` or ``dividend_amount`` difference; each
is stamped at New York midnight of its ex-date.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import pyarrow as pa

from marketpipe.lake.actions import actions_of, stored_symbols
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.one_sided import DIFFERENCE_SCHEMA
from marketpipe.markettime.calendar import new_york_midnight

ACTION_KINDS = (
    "split_missing_in_a",
    "split_missing_in_b",
    "split_ratio",
    "dividend_missing_in_a",
    "dividend_missing_in_b",
    "dividend_amount",
)
_SPLITS = frozenset({"forward_split", "reverse_split", "unit_split"})
_ENOUGH = 1e-9  # ratios and amounts equal to this relative precision are the same


def price_effects(table: pa.Table) -> dict[tuple[str, dt.date], float]:
    """``(split|dividend, ex_date) -> ratio or cash amount`` of one symbol's actions."""
    effects = {}
    for row in table.to_pylist():
        if row["ex_date"] is None:
            continue
        if row["type"] in _SPLITS and row["old_rate"] and row["new_rate"]:
            effects[("split", row["ex_date"])] = row["new_rate"] / row["old_rate"]
        elif row["type"] == "cash_dividend" and row["rate"] is not None:
            effects[("dividend", row["ex_date"])] = row["rate"]
    return effects


def action_differences(
    store_a: LakeStore,
    store_b: LakeStore,
    start: dt.date | None,
    end: dt.date | None,
    wanted: Sequence[str] | None,
) -> pa.Table:
    """The splits and cash dividends (ex-date from ``start`` to ``end``) the two lakes
    disagree on, for each symbol of ``wanted`` both keep actions for."""
    held = [set(stored_symbols(store)) for store in (store_a, store_b)]
    symbols = sorted(held[0] & held[1] & set(wanted if wanted is not None else held[0]))
    tables = [actions_of(store, symbols) for store in (store_a, store_b)]
    rows = []
    for symbol in symbols:
        a, b = (price_effects(side[symbol]) for side in tables)
        for kind, day in sorted(a.keys() | b.keys(), key=lambda key: (key[1], key[0])):
            if (start is not None and day < start) or (end is not None and day > end):
                continue
            value_a, value_b = a.get((kind, day)), b.get((kind, day))
            if value_a is not None and value_b is not None:
                if math.isclose(value_a, value_b, rel_tol=_ENOUGH):
                    continue
                label = "split_ratio" if kind == "split" else "dividend_amount"
            else:
                label = f"{kind}_missing_in_{'a' if value_a is None else 'b'}"
            rows.append(
                {
                    "symbol": symbol,
                    "timestamp": new_york_midnight(day),
                    "kind": label,
                    "value_a": value_a,
                    "value_b": value_b,
                }
            )
    return pa.Table.from_pylist(rows, schema=DIFFERENCE_SCHEMA)
