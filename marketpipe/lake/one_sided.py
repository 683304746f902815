"""What one lake holds and the other does not: bar partitions, news days, corporate actions.

A lake that lacks a whole symbol or day does not "agree" with one that has it: each such
partition, news day and corporate-actions file is a difference of its own, with the bar count
of the side that holds it (reconciliation compares the minutes of the partitions both hold).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.actions import stored_symbols
from marketpipe.lake.news import present_news_days
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import SYMBOL_COLUMN, new_york_day_keys
from marketpipe.markettime.calendar import new_york_midnight, trading_sessions

Partition = tuple[str, dt.date]
BarSource = Literal["bars", "trades"]  # stored bars, or bars rolled up from stored trades
PARTITION_KINDS = ("day_missing_in_a", "day_missing_in_b")
DATASET_KINDS = (
    "news_day_missing_in_a",
    "news_day_missing_in_b",
    "actions_missing_in_a",
    "actions_missing_in_b",
)
# A difference between two lakes, of any kind (marketpipe.lake.compare's rows too).
DIFFERENCE_SCHEMA = pa.schema(
    [
        pa.field(SYMBOL_COLUMN, pa.string(), nullable=False),
        pa.field("timestamp", OHLCV_SCHEMA.field("timestamp").type, nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("value_a", pa.float64()),
        pa.field("value_b", pa.float64()),
    ]
)


@dataclass(frozen=True)
class PartitionCounts:
    """Bars and volume of one side's partitions, by (symbol, day)."""

    rows: dict[Partition, int]
    volume: dict[Partition, float]


def day_key(day: dt.date) -> int:
    """``20240102`` for 2 January 2024 (the reader's New York day key)."""
    return day.year * 10_000 + day.month * 100 + day.day


def read_partitions(
    store: LakeStore, partitions: Sequence[Partition], source: BarSource = "bars"
) -> pa.Table:
    """The bars of exactly ``partitions`` (symbol, New York day), with each row's ``day``
    (``source="trades"``: rolled up from the stored trades)."""
    symbols = sorted({symbol for symbol, _ in partitions})
    first = min(day for _, day in partitions)
    last = max(day for _, day in partitions)
    table = read_bars(symbols, first, last, data_dir=store, missing="skip", source=source)
    table = table.append_column("day", new_york_day_keys(table).cast(pa.int32()))
    wanted = pa.table(
        {
            SYMBOL_COLUMN: [symbol for symbol, _ in partitions],
            "day": pa.array([day_key(day) for _, day in partitions], pa.int32()),
        }
    )
    return table.join(wanted, keys=[SYMBOL_COLUMN, "day"], join_type="inner")


def partition_counts(
    store: LakeStore, partitions: Sequence[Partition], source: BarSource = "bars"
) -> PartitionCounts:
    """How many bars, and how much volume, each of ``partitions`` holds."""
    if not partitions:
        return PartitionCounts({}, {})
    table = read_partitions(store, partitions, source).select([SYMBOL_COLUMN, "day", "volume"])
    grouped = table.group_by([SYMBOL_COLUMN, "day"]).aggregate(
        [("volume", "count"), ("volume", "sum")]
    )
    keys = {day_key(day): day for _, day in partitions}
    rows, volume = dict.fromkeys(partitions, 0), dict.fromkeys(partitions, 0.0)
    for row in grouped.to_pylist():
        where = (row[SYMBOL_COLUMN], keys[row["day"]])
        rows[where], volume[where] = row["volume_count"], float(row["volume_sum"])
    return PartitionCounts(rows, volume)


def partition_differences(
    only_a: Sequence[Partition], only_b: Sequence[Partition], counts: Sequence[PartitionCounts]
) -> pa.Table:
    """One ``day_missing_in_a``/``_b`` row per partition one side lacks, stamped at the
    session's open, with the other side's bar count."""
    rows = []
    opens = _session_opens([*only_a, *only_b])
    for kind, partitions, holder in (
        ("day_missing_in_a", only_b, 1),
        ("day_missing_in_b", only_a, 0),
    ):
        for symbol, day in partitions:
            count = float(counts[holder].rows.get((symbol, day), 0))
            values = (None, count) if holder else (count, None)
            rows.append((symbol, opens[day], kind, *values))
    return _table(rows)


def dataset_differences(
    a: LakeStore,
    b: LakeStore,
    start: dt.date | None,
    end: dt.date | None,
    symbols: Sequence[str] | None,
) -> pa.Table:
    """News days and corporate-actions files one lake holds and the other does not (news: the
    symbol is empty, one row per New York day; actions: one row per symbol)."""
    rows: list[tuple] = []
    days = [_in_range(present_news_days(store), start, end) for store in (a, b)]
    for kind, present, absent, holder in (
        ("news_day_missing_in_a", days[1], days[0], 1),
        ("news_day_missing_in_b", days[0], days[1], 0),
    ):
        for day in sorted(present - absent):
            rows.append(("", new_york_midnight(day), kind, *_held_by(holder)))
    wanted = None if symbols is None else set(symbols)
    held = [
        {symbol for symbol in stored_symbols(store) if wanted is None or symbol in wanted}
        for store in (a, b)
    ]
    stamp = new_york_midnight(start or dt.date(1970, 1, 1))
    for kind, present, absent, holder in (
        ("actions_missing_in_a", held[1], held[0], 1),
        ("actions_missing_in_b", held[0], held[1], 0),
    ):
        for symbol in sorted(present - absent):
            rows.append((symbol, stamp, kind, *_held_by(holder)))
    return _table(rows)


def _held_by(holder: int) -> tuple[float | None, float | None]:
    return (None, 1.0) if holder else (1.0, None)


def _in_range(days: set[dt.date], start: dt.date | None, end: dt.date | None) -> set[dt.date]:
    return {day for day in days if (start is None or day >= start) and (end is None or day <= end)}


def _session_opens(partitions: Sequence[Partition]) -> dict[dt.date, dt.datetime]:
    if not partitions:
        return {}
    days = [day for _, day in partitions]
    return {session.date: session.open for session in trading_sessions(min(days), max(days))}


def _table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in DIFFERENCE_SCHEMA]
    return pa.table(
        {
            field.name: pa.array(column, field.type)
            for field, column in zip(DIFFERENCE_SCHEMA, columns, strict=True)
        },
        schema=DIFFERENCE_SCHEMA,
    )


def count_kinds(table: pa.Table, kinds: Sequence[str]) -> dict[str, int]:
    """How many rows of ``table`` have each of ``kinds`` (zeros included)."""
    found = pc.value_counts(table["kind"]).to_pylist() if table.num_rows else []
    counted = {item["values"]: item["counts"] for item in found}
    return {kind: counted.get(kind, 0) for kind in kinds}
