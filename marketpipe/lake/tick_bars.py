"""One-minute bars rolled up from stored trades, by the vendor's condition rules (see
:mod:`marketpipe.connectors.tick_conditions`): what a user does to check a vendor's bars.

vwap is rounded to 4 decimals, as vendors print it; summed print by print, it can round a
half the other way from the vendor's own sum (one in the last place, far below a cent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.connectors.tick_conditions import BarRules, bar_rules
from marketpipe.lake.objects import LakeStore, lake_filesystem
from marketpipe.lake.storage import SYMBOL_COLUMN, as_store, lists_naming_any
from marketpipe.lake.ticks import read_ticks, tick_files

_COLUMNS = ["timestamp", "price", "size", "conditions"]


def bars_from_trades(trades: pa.Table, rules: BarRules) -> pa.Table:
    """Canonical one-minute bars (labelled at the minute's start) of ``trades`` (``symbol``,
    ``timestamp``, ``price``, ``size``, ``conditions``; each symbol's in time order)."""
    counted = trades.filter(pa.array(~lists_naming_any(trades["conditions"], rules.uncounted)))
    in_range = ~lists_naming_any(counted["conditions"], rules.not_in_range)
    prices = counted["price"]
    table = pa.table(
        {
            SYMBOL_COLUMN: counted[SYMBOL_COLUMN],
            "minute": pc.floor_temporal(counted["timestamp"], unit="minute"),
            "price": prices,
            "range_price": pc.if_else(pa.array(in_range), prices, pa.scalar(None, pa.float64())),
            "size": counted["size"],
            "notional": pc.multiply(prices, counted["size"]),
        }
    )
    grouped = table.group_by([SYMBOL_COLUMN, "minute"], use_threads=False).aggregate(
        [
            ("price", "first"),
            ("price", "last"),
            ("price", "max"),
            ("price", "min"),
            ("range_price", "max"),
            ("range_price", "min"),
            ("size", "sum"),
            ("size", "count"),
            ("notional", "sum"),
        ]
    )
    # numpy's rounding gives the nearest double to the 4-decimal value (Arrow's can be a
    # hair off it), as vendors print vwap.
    notional = grouped["notional_sum"].to_numpy()
    vwap = pa.array(np.round(notional / grouped["size_sum"].to_numpy(), 4))
    bars = pa.table(
        {
            SYMBOL_COLUMN: grouped[SYMBOL_COLUMN],
            "timestamp": grouped["minute"],
            "open": grouped["price_first"],
            "high": pc.coalesce(grouped["range_price_max"], grouped["price_max"]),
            "low": pc.coalesce(grouped["range_price_min"], grouped["price_min"]),
            "close": grouped["price_last"],
            "volume": grouped["size_sum"],
            "trade_count": grouped["size_count"],
            "vwap": vwap,
        }
    )
    ordered = bars.sort_by([(SYMBOL_COLUMN, "ascending"), ("timestamp", "ascending")])
    return ordered.cast(OHLCV_SCHEMA)


def trades_vendor(lake: LakeStore, key: str) -> str:
    """The vendor a stored trades file names in its footer."""
    filesystem, root = lake_filesystem(lake)
    metadata = pq.read_schema(f"{root}/{key}", filesystem=filesystem).metadata or {}
    return metadata.get(b"marketpipe.vendor", b"unknown").decode()


def read_trade_bars(
    symbols: Sequence[str],
    first: dt.date,
    last: dt.date,
    data_dir: LakeStore | Path | str,
    missing: Literal["error", "skip"] = "error",
) -> pa.Table:
    """One-minute bars of ``symbols`` from ``first`` to ``last`` (New York dates), rolled
    up from the lake's stored trades by its vendor's condition rules."""
    lake = as_store(data_dir)
    files = tick_files("trades", symbols, first, last, lake, missing)
    if not files:
        return OHLCV_SCHEMA.empty_table()
    rules = bar_rules(trades_vendor(lake, files[0][1]))
    trades = read_ticks(
        "trades", symbols, first, last, data_dir=lake, columns=_COLUMNS, missing="skip"
    )
    return bars_from_trades(trades, rules)
