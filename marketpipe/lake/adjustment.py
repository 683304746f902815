"""Split- and dividend-adjusted prices, computed when reading, from raw bars and stored actions.

The lake keeps raw bars only; an adjusted lake would go stale with the next split. For a bar
of New York trading date ``d`` the adjustment multiplies by every later action's factor
(ex-date after ``d``), oldest first, as the vendor does:

- a split (forward or reverse) of ``new_rate`` for ``old_rate`` shares: prices by
  ``old/new``, volume by ``new/old``; a stock dividend of ``rate``: like a ``1 + rate`` split;
- a cash dividend of ``rate``: prices by ``1 - rate / close``, where ``close`` is the raw
  SIP close of the last regular-hours minute of the session before the ex-date (stored with
  the action as ``reference_close``); volume is unchanged.

Open, high, low, close and vwap are prices; trade counts are never adjusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.lake.actions import REFERENCE_CLOSE
from marketpipe.lake.storage import SYMBOL_COLUMN, new_york_day_keys

ADJUSTMENTS = ("raw", "split", "dividend", "all")
PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")
SPLIT_TYPES = ("forward_split", "reverse_split", "stock_dividend")
DIVIDEND_TYPES = ("cash_dividend",)


class AdjustmentWarning(UserWarning):
    """An action could not be applied yet (the adjusted read names it)."""


def adjustment_kinds(adjustment: str) -> frozenset[str]:
    """``raw`` / ``split`` / ``dividend`` / ``all`` (or ``split,dividend``) as the effects to
    apply; anything else raises ``ValueError`` naming the choices."""
    parts = {part.strip() for part in adjustment.split(",")}
    if not parts or not parts <= set(ADJUSTMENTS) or ("raw" in parts and len(parts) > 1):
        raise ValueError(
            f"adjustment {adjustment!r} is not valid; use one of {', '.join(ADJUSTMENTS)}"
        )
    if "all" in parts:
        return frozenset({"split", "dividend"})
    return frozenset(parts - {"raw"})


def _day_key(day: object) -> int:
    return day.year * 10_000 + day.month * 100 + day.day  # type: ignore[attr-defined]


def _factors(actions: pa.Table, kinds: frozenset[str]) -> list[tuple[int, float, float]]:
    """(ex-date key, price factor, volume factor) of each applicable action, oldest first."""
    events = []
    for row in actions.to_pylist():
        kind, ex_date = row["type"], row["ex_date"]
        if ex_date is None:
            continue
        if kind in SPLIT_TYPES and "split" in kinds:
            ratio = split_ratio(row)
            events.append((_day_key(ex_date), str(row["id"]), 1.0 / ratio, ratio))
        elif kind in DIVIDEND_TYPES and "dividend" in kinds:
            close, cash = row[REFERENCE_CLOSE], row["rate"]
            if cash is None:
                raise ValueError(f"cash dividend {row['id']} of {row['symbol']} has no rate")
            if close is None:
                warnings.warn(
                    f"the {row['symbol']} cash dividend of {cash} (ex-date {ex_date}) is not "
                    "applied: the close before its ex-date is not final yet (the next run "
                    "fetches it)",
                    AdjustmentWarning,
                    stacklevel=4,
                )
                continue
            if not 0 < cash < close:
                raise ValueError(
                    f"cash dividend {row['id']} of {row['symbol']}: rate {cash} is not between "
                    f"0 and the close before its ex-date ({close})"
                )
            events.append((_day_key(ex_date), str(row["id"]), 1.0 - cash / close, 1.0))
    events.sort()
    return [(key, price, volume) for key, _, price, volume in events]


def split_ratio(row: Mapping[str, object]) -> float:
    """New shares per old share of a split (or ``1 + rate`` of a stock dividend)."""
    if row["type"] == "stock_dividend":
        rate = row["rate"]
        if not isinstance(rate, float) or rate <= 0:
            raise ValueError(f"stock dividend {row['id']} of {row['symbol']} has no rate > 0")
        return 1.0 + rate
    old, new = row["old_rate"], row["new_rate"]
    if not isinstance(old, float) or not isinstance(new, float) or old <= 0 or new <= 0:
        raise ValueError(f"split {row['id']} of {row['symbol']} has no old_rate/new_rate > 0")
    return new / old


def _cumulative(events: list[tuple[int, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Ex-date keys, and for each position ``i`` the (price, volume) product of the factors
    ``i..`` multiplied oldest first (as the vendor does, so the floats agree too)."""
    keys = np.array([key for key, _, _ in events], dtype=np.int64)
    products = np.ones((len(events) + 1, 2))
    for first in range(len(events)):
        price, volume = 1.0, 1.0
        for _, price_factor, volume_factor in events[first:]:
            price *= price_factor
            volume *= volume_factor
        products[first] = (price, volume)
    return keys, products


def adjust_bars(
    table: pa.Table, actions: Mapping[str, pa.Table], kinds: frozenset[str]
) -> pa.Table:
    """``table`` (raw bars with a symbol column) with every later action of ``kinds`` applied.

    ``actions`` holds each symbol's stored actions
    (:func:`marketpipe.lake.actions.read_actions`).
    """
    if not kinds or table.num_rows == 0:
        return table
    table = table.combine_chunks()
    day_keys = new_york_day_keys(table).to_numpy()
    symbols = table[SYMBOL_COLUMN].to_numpy()
    factors = np.ones((table.num_rows, 2))
    for symbol, symbol_actions in actions.items():
        keys, products = _cumulative(_factors(symbol_actions, kinds))
        if len(keys) == 0:
            continue
        rows = np.flatnonzero(symbols == symbol)
        # The actions that apply to a bar are those with an ex-date after its day.
        factors[rows] = products[np.searchsorted(keys, day_keys[rows], side="right")]
    price, volume = pa.array(factors[:, 0]), pa.array(factors[:, 1])
    columns = [
        pc.multiply(table[name], price)
        if name in PRICE_COLUMNS
        else pc.multiply(table[name], volume)
        if name == "volume"
        else table[name]
        for name in table.column_names
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)
