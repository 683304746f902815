"""Cross-source reconciliation: two lakes' bars compared minute by minute, in Arrow.

Only the (symbol, session) partitions both lakes hold are compared, so a lake that covers
less is not blamed for what it never fetched. Within them, a minute one lake has and the
other lacks is a ``missing_in_a``/``missing_in_b`` difference (its value: that bar's
volume), and a minute both have differs in a field when the relative difference
``|a - b| / max(|a|, |b|)`` exceeds the tolerance: ``price_tolerance`` for open, high,
low, close and vwap, ``volume_tolerance`` for volume and trade_count. A field either side
does not carry (``vwap``/``trade_count`` are optional for some vendors) is not compared.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.reader import read_bars, sorted_symbols
from marketpipe.lake.storage import (
    SYMBOL_COLUMN,
    as_store,
    new_york_day_keys,
    partition_key,
    present_partitions,
    read_table_at,
)
from marketpipe.markettime.calendar import trading_sessions

KINDS = (
    "missing_in_a",
    "missing_in_b",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trade_count",
    "vwap",
)
PRICE_FIELDS = ("open", "high", "low", "close", "vwap")
DEFAULT_PRICE_TOLERANCE = 1e-4  # one basis point: far below a tick on most stocks' prices
DEFAULT_VOLUME_TOLERANCE = 0.05  # vendors' trade-condition filters differ by a few percent
DIFFERENCE_SCHEMA = pa.schema(
    [
        pa.field(SYMBOL_COLUMN, pa.string(), nullable=False),
        pa.field("timestamp", OHLCV_SCHEMA.field("timestamp").type, nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("value_a", pa.float64()),
        pa.field("value_b", pa.float64()),
    ]
)
_VALUES = [name for name in OHLCV_SCHEMA.names if name not in (SYMBOL_COLUMN, "timestamp")]


class NothingToCompareError(LookupError):
    """The two lakes share no (symbol, session) partition in the range asked for."""


@dataclass(frozen=True)
class LakeSource:
    """Where a lake's bars came from, as its partitions' metadata say."""

    uri: str
    vendor: str
    feed: str


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`reconcile_lakes` found: every difference and a per-symbol-day summary."""

    a: LakeSource
    b: LakeSource
    differences: pa.Table  # DIFFERENCE_SCHEMA, sorted by symbol, time and kind
    summary: pa.Table  # one row per compared symbol-day
    price_tolerance: float
    volume_tolerance: float

    @property
    def agree(self) -> bool:
        """True when no minute differs beyond the tolerances."""
        return self.differences.num_rows == 0

    def counts(self) -> dict[str, int]:
        """Differences by kind, every kind named (zeros included)."""
        return {kind: sum(self.summary[kind].to_pylist()) for kind in KINDS}


def reconcile(
    lake_a: LakeStore | Path | str,
    lake_b: LakeStore | Path | str,
    **options: object,
) -> pa.Table:
    """The minutes where ``lake_b`` differs from ``lake_a``, one row per difference (see
    :func:`reconcile_lakes` for the options and the summary)."""
    return reconcile_lakes(lake_a, lake_b, **options).differences  # type: ignore[arg-type]


def reconcile_lakes(
    lake_a: LakeStore | Path | str,
    lake_b: LakeStore | Path | str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    symbols: Sequence[str] | None = None,
    price_tolerance: float = DEFAULT_PRICE_TOLERANCE,
    volume_tolerance: float = DEFAULT_VOLUME_TOLERANCE,
) -> Reconciliation:
    """Compare two lakes (local directories or ``s3://`` URIs) minute by minute over the
    sessions both hold between ``start`` and ``end`` (New York dates, inclusive; default:
    all), for ``symbols`` (default: every symbol both lakes hold)."""
    for name, value in (
        ("price_tolerance", price_tolerance),
        ("volume_tolerance", volume_tolerance),
    ):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be a relative difference in [0, 1), got {value}")
    stores = as_store(lake_a), as_store(lake_b)
    common = _common_partitions(*stores, start, end, symbols)
    sources = tuple(lake_source(store, common[0]) for store in stores)
    bars = [_read(store, common) for store in stores]
    joined = bars[0].join(
        bars[1],
        keys=[SYMBOL_COLUMN, "timestamp"],
        join_type="full outer",
        left_suffix="_a",
        right_suffix="_b",
        coalesce_keys=True,
    )
    flags = _flags(joined, price_tolerance, volume_tolerance)
    differences = _differences(joined, flags)
    summary = _summary(joined, flags, common, sources)
    return Reconciliation(
        sources[0], sources[1], differences, summary, price_tolerance, volume_tolerance
    )


def _common_partitions(
    a: LakeStore,
    b: LakeStore,
    start: dt.date | None,
    end: dt.date | None,
    symbols: Sequence[str] | None,
) -> list[tuple[str, dt.date]]:
    wanted = None if symbols is None else sorted_symbols(symbols)
    common = present_partitions(a, wanted) & present_partitions(b, wanted)
    chosen = sorted(
        (symbol, day)
        for symbol, day in common
        if (start is None or day >= start) and (end is None or day <= end)
    )
    if not chosen:
        where = f"between {start or 'the start'} and {end or 'the end'}"
        raise NothingToCompareError(
            f"{a.uri} and {b.uri} hold no (symbol, session) partition in common {where}"
            + (f" for {', '.join(wanted)}" if wanted else "")
            + "; check the paths, --symbols and the dates"
        )
    return chosen


def lake_source(store: LakeStore, partition: tuple[str, dt.date]) -> LakeSource:
    """The vendor and feed a lake's bars came from, read from one partition's metadata."""
    metadata = read_table_at(store, partition_key(*partition)).schema.metadata or {}

    def value(key: str) -> str:
        return metadata.get(f"marketpipe.{key}".encode(), b"unknown").decode()

    return LakeSource(store.uri, value("vendor"), value("feed"))


def _read(store: LakeStore, common: list[tuple[str, dt.date]]) -> pa.Table:
    """The bars of the common symbol-days only, with each row's New York day."""
    symbols = sorted({symbol for symbol, _ in common})
    first, last = min(day for _, day in common), max(day for _, day in common)
    table = read_bars(symbols, first, last, data_dir=store, missing="skip")
    table = table.append_column("day", new_york_day_keys(table).cast(pa.int32()))
    wanted = pa.table(
        {
            SYMBOL_COLUMN: [symbol for symbol, _ in common],
            "day": pa.array([_day_key(day) for _, day in common], pa.int32()),
        }
    )
    return table.join(wanted, keys=[SYMBOL_COLUMN, "day"], join_type="inner")


def _day_key(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _differs(a: pa.ChunkedArray, b: pa.ChunkedArray, tolerance: float) -> pa.ChunkedArray:
    a, b = a.cast(pa.float64()), b.cast(pa.float64())
    gap = pc.abs(pc.subtract(a, b))
    allowed = pc.multiply(pc.max_element_wise(pc.abs(a), pc.abs(b)), tolerance)
    return pc.fill_null(pc.greater(gap, allowed), False)  # null: a side lacks it


def _flags(joined: pa.Table, price: float, volume: float) -> dict[str, pa.ChunkedArray]:
    """Per joined row and kind: whether that row has that difference."""
    in_a, in_b = pc.is_valid(joined["open_a"]), pc.is_valid(joined["open_b"])
    flags = {"missing_in_a": pc.invert(in_a), "missing_in_b": pc.invert(in_b)}
    for name in _VALUES:
        tolerance = price if name in PRICE_FIELDS else volume
        flags[name] = _differs(joined[f"{name}_a"], joined[f"{name}_b"], tolerance)
    return flags


def _differences(joined: pa.Table, flags: dict[str, pa.ChunkedArray]) -> pa.Table:
    parts = []
    for rank, kind in enumerate(KINDS):
        rows = joined.filter(flags[kind])
        field = "volume" if kind.startswith("missing") else kind
        values = [rows[f"{field}_{side}"].cast(pa.float64()) for side in "ab"]
        if kind == "missing_in_a":
            values[0] = pa.nulls(rows.num_rows, pa.float64())
        if kind == "missing_in_b":
            values[1] = pa.nulls(rows.num_rows, pa.float64())
        parts.append(
            pa.table(
                {
                    SYMBOL_COLUMN: rows[SYMBOL_COLUMN],
                    "timestamp": rows["timestamp"],
                    "kind": pa.array([kind] * rows.num_rows, pa.string()),
                    "value_a": values[0],
                    "value_b": values[1],
                    "rank": pa.array([rank] * rows.num_rows, pa.int8()),
                }
            )
        )
    table = pa.concat_tables(parts).sort_by(
        [(SYMBOL_COLUMN, "ascending"), ("timestamp", "ascending"), ("rank", "ascending")]
    )
    return table.drop_columns(["rank"]).cast(DIFFERENCE_SCHEMA)


def _summary(
    joined: pa.Table,
    flags: dict[str, pa.ChunkedArray],
    common: list[tuple[str, dt.date]],
    sources: tuple[LakeSource, ...],
) -> pa.Table:
    """One row per compared symbol-day: minutes, matches, differences by kind, volumes."""
    any_difference = flags["missing_in_a"]
    for kind in KINDS[1:]:
        any_difference = pc.or_(any_difference, flags[kind])
    day = pc.coalesce(joined["day_a"], joined["day_b"])
    columns = {
        SYMBOL_COLUMN: joined[SYMBOL_COLUMN],
        "day": day,
        "minutes_a": pc.is_valid(joined["open_a"]).cast(pa.int64()),
        "minutes_b": pc.is_valid(joined["open_b"]).cast(pa.int64()),
        "matching_minutes": pc.invert(any_difference).cast(pa.int64()),
        **{kind: flags[kind].cast(pa.int64()) for kind in KINDS},
        "volume_a": pc.fill_null(joined["volume_a"], 0.0),
        "volume_b": pc.fill_null(joined["volume_b"], 0.0),
    }
    counted = [name for name in columns if name not in (SYMBOL_COLUMN, "day")]
    grouped = (
        pa.table(columns)
        .group_by([SYMBOL_COLUMN, "day"])
        .aggregate([(name, "sum") for name in counted])
    )
    found = {(row[SYMBOL_COLUMN], row["day"]): row for row in grouped.to_pylist()}
    closes = _closing_bars(joined, flags, common)
    rows = []
    for symbol, session_day in common:
        totals = found.get((symbol, _day_key(session_day)), {})
        row = {name: totals.get(f"{name}_sum", 0) for name in counted}
        volume_a, volume_b = row["volume_a"], row["volume_b"]
        rows.append(
            {
                SYMBOL_COLUMN: symbol,
                "date": session_day,
                **row,
                "volume_ratio": volume_b / volume_a if volume_a else None,
                "notes": _notes(row, sources, (symbol, session_day) in closes),
            }
        )
    return pa.Table.from_pylist(rows, schema=_summary_schema(counted))


def _summary_schema(counted: list[str]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(SYMBOL_COLUMN, pa.string()),
            pa.field("date", pa.date32()),
            *(
                pa.field(name, pa.float64() if name in ("volume_a", "volume_b") else pa.int64())
                for name in counted
            ),
            pa.field("volume_ratio", pa.float64()),
            pa.field("notes", pa.string()),
        ]
    )


def _closing_bars(
    joined: pa.Table, flags: dict[str, pa.ChunkedArray], common: list[tuple[str, dt.date]]
) -> set[tuple[str, dt.date]]:
    """Symbol-days with a difference in the bar that starts at the regular close."""
    days = sorted({day for _, day in common})
    closes = {session.close for session in trading_sessions(days[0], days[-1])}
    differing = pc.or_(flags["close"], pc.or_(flags["volume"], flags["missing_in_a"]))
    differing = pc.or_(differing, flags["missing_in_b"])
    rows = joined.filter(differing).select([SYMBOL_COLUMN, "timestamp"]).to_pylist()
    return {
        (row[SYMBOL_COLUMN], row["timestamp"].date()) for row in rows if row["timestamp"] in closes
    }


def _notes(row: dict[str, float], sources: tuple[LakeSource, ...], at_close: bool) -> str:
    """Known, legitimate reasons for this symbol-day's differences (empty when none)."""
    a, b = sources
    notes = []
    volume_or_gaps = row["volume"] or row["missing_in_a"] or row["missing_in_b"]
    if a.feed != b.feed and volume_or_gaps:
        notes.append(
            f"feeds differ ({a.feed} vs {b.feed}): a single exchange's feed (iex) carries a "
            "small share of the volume and fewer minutes than the consolidated tape (sip)"
        )
    if at_close and a.vendor != b.vendor and "polygon" in (a.vendor, b.vendor):
        notes.append("close bar: Polygon puts the closing auction print in the 16:00 bar")
    return "; ".join(notes)
