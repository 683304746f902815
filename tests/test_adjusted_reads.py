"""Corporate actions in the lake and adjusted reads: storage, merging, and the arithmetic."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import marketpipe
from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.actions import (
    ACTIONS_SCHEMA,
    MissingActionsError,
    actions_path,
    merge_actions,
    publish_actions,
    read_actions,
)
from marketpipe.lake.adjustment import AdjustmentWarning, adjust_bars, adjustment_kinds
from marketpipe.lake.storage import partition_path, write_partition
from marketpipe.markettime.calendar import NEW_YORK

DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)]
REFERENCE = "reference_close"


def action(action_id: str, kind: str, ex_date: dt.date, **fields: Any) -> dict[str, Any]:
    """One stored action row of XYZ (process date = ex-date unless given)."""
    row = {name: None for name in ACTIONS_SCHEMA.names}
    row.update(
        id=action_id, type=kind, symbol="XYZ", process_date=ex_date, ex_date=ex_date, raw="{}"
    )
    row.update(fields)
    return row


def actions_table(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ACTIONS_SCHEMA)


def bars(symbol: str = "XYZ", vwap: float | None = 20.5) -> pa.Table:
    """One 10:00 New York bar of ``symbol`` on each of DAYS."""
    rows = [
        {
            "symbol": symbol,
            "timestamp": dt.datetime.combine(day, dt.time(10), NEW_YORK),
            "open": 20.0,
            "high": 21.0,
            "low": 19.0,
            "close": 20.0,
            "volume": 1000.0,
            "trade_count": 7,
            "vwap": vwap,
        }
        for day in DAYS
    ]
    return pa.Table.from_pylist(rows, schema=OHLCV_SCHEMA)


# A 2-for-1 split effective on the third day, a 1.00 dividend going ex on the second, whose
# close before the ex-date was 50.
SPLIT = action("s1", "forward_split", DAYS[2], old_rate=1.0, new_rate=2.0)
DIVIDEND = action("d1", "cash_dividend", DAYS[1], rate=1.0, reference_close=50.0)


def test_adjustment_names() -> None:
    assert adjustment_kinds("raw") == frozenset()
    assert adjustment_kinds("all") == adjustment_kinds("split,dividend") == {"split", "dividend"}
    for bad in ("spin-off", "", "raw,split", "splits"):
        with pytest.raises(ValueError, match="use one of raw, split, dividend, all"):
            adjustment_kinds(bad)


def test_factors_apply_to_sessions_before_each_ex_date() -> None:
    actions = {"XYZ": actions_table(SPLIT, DIVIDEND)}
    table = bars()
    split = adjust_bars(table, actions, adjustment_kinds("split"))
    assert split["close"].to_pylist() == [10.0, 10.0, 20.0]
    assert split["volume"].to_pylist() == [2000.0, 2000.0, 1000.0]
    dividend = adjust_bars(table, actions, adjustment_kinds("dividend"))
    assert dividend["close"].to_pylist() == [20.0 * (1 - 1 / 50), 20.0, 20.0]
    assert dividend["volume"].to_pylist() == [1000.0] * 3
    both = adjust_bars(table, actions, adjustment_kinds("all"))
    assert both["high"].to_pylist() == pytest.approx([21 * 0.98 / 2, 21 / 2, 21.0], rel=1e-15)
    assert both["trade_count"].to_pylist() == [7, 7, 7]
    assert both.schema == table.schema


def test_other_symbols_null_vwap_and_other_kinds_are_left_alone() -> None:
    table = pa.concat_tables([bars("ABC", vwap=None), bars()])
    spin_off = action("o1", "spin_off", DAYS[2], old_rate=1.0, new_rate=0.5)
    rename = action("n1", "name_change", DAYS[2], new_symbol="XYZN")
    actions = {"XYZ": actions_table(SPLIT, spin_off, rename), "ABC": actions_table()}
    adjusted = adjust_bars(table, actions, adjustment_kinds("all"))
    assert adjusted["close"].to_pylist() == [20.0, 20.0, 20.0, 10.0, 10.0, 20.0]
    assert adjusted["vwap"].to_pylist()[:3] == [None, None, None]


def test_reverse_splits_and_stock_dividends_count_as_splits() -> None:
    reverse = action("r1", "reverse_split", DAYS[1], old_rate=10.0, new_rate=1.0)
    stock = action("k1", "stock_dividend", DAYS[2], rate=0.25)
    adjusted = adjust_bars(bars(), {"XYZ": actions_table(reverse, stock)}, frozenset({"split"}))
    assert adjusted["close"].to_pylist() == pytest.approx([20 * 10 / 1.25, 20 / 1.25, 20.0])
    assert adjusted["volume"].to_pylist() == pytest.approx([1000 * 1.25 / 10, 1250.0, 1000.0])


def test_a_dividend_without_its_close_is_named_and_not_applied() -> None:
    waiting = action("d2", "cash_dividend", DAYS[2], rate=0.5)
    with pytest.warns(AdjustmentWarning, match=r"XYZ cash dividend of 0.5 \(ex-date 2024-03-06"):
        adjusted = adjust_bars(bars(), {"XYZ": actions_table(waiting)}, frozenset({"dividend"}))
    assert adjusted["close"].to_pylist() == [20.0] * 3


def test_impossible_records_are_refused_by_name() -> None:
    broken_split = action("s9", "forward_split", DAYS[2], old_rate=1.0)
    with pytest.raises(ValueError, match="split s9 of XYZ has no old_rate/new_rate"):
        adjust_bars(bars(), {"XYZ": actions_table(broken_split)}, frozenset({"split"}))
    huge = action("d9", "cash_dividend", DAYS[2], rate=60.0, reference_close=50.0)
    with pytest.raises(ValueError, match=r"d9 of XYZ: rate 60\.0 is not between 0 and"):
        adjust_bars(bars(), {"XYZ": actions_table(huge)}, frozenset({"dividend"}))


def test_merging_re_reads_the_window_and_keeps_one_row_per_id() -> None:
    old = action("a", "cash_dividend", dt.date(2024, 1, 10), rate=0.1, reference_close=30.0)
    inside = action("b", "cash_dividend", dt.date(2024, 2, 20), rate=0.2, reference_close=31.0)
    withdrawn = action("c", "forward_split", dt.date(2024, 2, 25), old_rate=1.0, new_rate=3.0)
    stored = actions_table(old, inside, withdrawn)
    corrected = {**inside, "rate": 0.25, REFERENCE: None}
    late = action("d", "forward_split", dt.date(2024, 2, 22), old_rate=1.0, new_rate=2.0)
    merged = merge_actions(
        stored, actions_table(corrected, late), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
    )
    rows = {row["id"]: row for row in merged.to_pylist()}
    assert sorted(rows) == ["a", "b", "d"]  # c was withdrawn inside the window
    assert rows["b"]["rate"] == 0.25 and rows["b"][REFERENCE] == 31.0  # close kept by ex-date
    assert merged["ex_date"].to_pylist() == sorted(merged["ex_date"].to_pylist())


def test_files_are_deterministic_and_rewritten_only_on_change(tmp_path: Path) -> None:
    table = actions_table(DIVIDEND, SPLIT)
    written, changed = publish_actions(tmp_path, "XYZ", table)
    assert changed and written.rows == 2
    path = actions_path(tmp_path, "XYZ")
    assert path == tmp_path / "corporate_actions" / "symbol=XYZ" / "actions.parquet"
    stamp = os.stat(path).st_mtime_ns
    again, changed = publish_actions(
        tmp_path, "XYZ", actions_table(SPLIT, DIVIDEND), written.sha256
    )
    assert not changed and again.sha256 == written.sha256
    assert os.stat(path).st_mtime_ns == stamp
    stored = read_actions(tmp_path, "XYZ")
    assert stored is not None and stored.to_pylist() == table.to_pylist()
    assert "symbol" not in pa.parquet.read_schema(path).names  # the path carries it
    assert read_actions(tmp_path, "ABC") is None


def write_lake(root: Path, adjustment: str = "raw") -> None:
    for day, rows in zip(DAYS, bars().to_batches(max_chunksize=1), strict=True):
        metadata = {
            "marketpipe.symbol": "XYZ",
            "marketpipe.day": day.isoformat(),
            "marketpipe.adjustment": adjustment,
        }
        write_partition(partition_path(root, "XYZ", day), pa.Table.from_batches([rows]), metadata)


def test_read_bars_adjusts_from_the_lake_and_says_what_is_missing(tmp_path: Path) -> None:
    write_lake(tmp_path)
    with pytest.raises(MissingActionsError, match="no corporate actions are stored for XYZ"):
        marketpipe.read_bars("XYZ", DAYS[0], DAYS[-1], data_dir=tmp_path, adjustment="split")
    publish_actions(tmp_path, "XYZ", actions_table(SPLIT, DIVIDEND))
    frame = marketpipe.read_bars(
        "XYZ", DAYS[0], DAYS[-1], data_dir=tmp_path, adjustment="all", output="pandas"
    )
    assert frame["close"].tolist() == pytest.approx([9.8, 10.0, 20.0])
    raw = marketpipe.read_bars("XYZ", DAYS[0], DAYS[-1], data_dir=tmp_path)
    assert raw["close"].to_pylist() == [20.0] * 3
    with pytest.raises(ValueError, match="adjustment 'splits' is not valid"):
        marketpipe.read_bars("XYZ", DAYS[0], DAYS[-1], data_dir=tmp_path, adjustment="splits")


def test_bars_the_vendor_adjusted_are_not_adjusted_twice(tmp_path: Path) -> None:
    write_lake(tmp_path, adjustment="split")
    publish_actions(tmp_path, "XYZ", actions_table(SPLIT))
    with pytest.raises(ValueError, match="bars the vendor adjusted \\('split'"):
        marketpipe.read_bars("XYZ", DAYS[0], DAYS[-1], data_dir=tmp_path, adjustment="split")
