"""Cross-source reconciliation: two lakes' bars compared minute by minute, in Arrow.

A (symbol, session) partition, news day or corporate-actions file that only one lake holds
is a difference (``day_missing_in_b`` ..., see :mod:`marketpipe.lake.one_sided`), unless
``allow_missing`` asks to compare only what both hold. Within the partitions both hold, a
minute one lake has and the other lacks is a ``missing_in_a``/``missing_in_b`` difference
(its value: that bar's volume), and a minute both have differs in a price (open, high, low,
close, vwap) beyond ``price_tolerance`` (default: exact to the tick, see
:mod:`marketpipe.lake.tolerance`) or in volume or trade_count by more than the relative
``volume_tolerance``. A field either side does not carry (``vwap``/``trade_count`` are
optional for some vendors) is not compared. Each symbol's splits and cash dividends are
compared too (see :mod:`marketpipe.lake.compare_actions`), as are its securities.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.compare_actions import ACTION_KINDS, action_differences
from marketpipe.lake.compare_securities import SECURITY_KINDS, security_differences
from marketpipe.lake.compare_sides import LakeSource, held_partitions, lake_source
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.one_sided import (
    DATASET_KINDS,
    DIFFERENCE_SCHEMA,
    PARTITION_KINDS,
    BarSource,
    Partition,
    PartitionCounts,
    count_kinds,
    dataset_differences,
    day_key,
    partition_counts,
    partition_differences,
    read_partitions,
)
from marketpipe.lake.reader import sorted_symbols
from marketpipe.lake.storage import (
    SYMBOL_COLUMN,
    as_store,
)
from marketpipe.lake.tolerance import PriceTolerance, relative_differs
from marketpipe.markettime.calendar import trading_sessions

MINUTE_KINDS = (
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
KINDS = (*PARTITION_KINDS, *MINUTE_KINDS)  # the per-symbol-day summary's columns
ALL_KINDS = (*KINDS, *DATASET_KINDS, *SECURITY_KINDS, *ACTION_KINDS)
PRICE_FIELDS = ("open", "high", "low", "close", "vwap")
DEFAULT_PRICE_TOLERANCE = "0"  # exact to the tick (see marketpipe.lake.tolerance)
DEFAULT_VOLUME_TOLERANCE = 0.05  # vendors' trade-condition filters differ by a few percent
_VALUES = [name for name in OHLCV_SCHEMA.names if name not in (SYMBOL_COLUMN, "timestamp")]


class NothingToCompareError(LookupError):
    """Neither lake holds a (symbol, session) partition in the range asked for (or, with
    ``allow_missing``, they share none)."""


@dataclass(frozen=True)
class Reconciliation:
    """What :func:`reconcile_lakes` found: every difference and a per-symbol-day summary."""

    a: LakeSource
    b: LakeSource
    differences: pa.Table  # DIFFERENCE_SCHEMA, sorted by symbol, time and kind
    summary: pa.Table  # one row per symbol-day either lake holds
    price_tolerance: PriceTolerance
    volume_tolerance: float
    allow_missing: bool = False

    @property
    def agree(self) -> bool:
        """True when nothing differs: no minute beyond the tolerances, and (unless
        ``allow_missing``) no partition, news day or actions file held by one side only."""
        return self.differences.num_rows == 0

    def counts(self) -> dict[str, int]:
        """Differences by kind, every kind named (zeros included)."""
        return count_kinds(self.differences, ALL_KINDS)


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
    lake_b: LakeStore | Path | str | None = None,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    symbols: Sequence[str] | None = None,
    price_tolerance: PriceTolerance | str | float = DEFAULT_PRICE_TOLERANCE,
    volume_tolerance: float = DEFAULT_VOLUME_TOLERANCE,
    allow_missing: bool = False,
    b_source: BarSource = "bars",
) -> Reconciliation:
    """Compare two lakes (local directories or ``s3://`` URIs) between ``start`` and ``end``
    (New York dates, inclusive; default: all), for ``symbols`` (default: every symbol either
    lake holds): minute by minute where both hold a partition, and (unless
    ``allow_missing``) what only one of them holds. ``price_tolerance``: ``"0"`` (exact to
    the tick), dollars (``"0.01"``) or basis points (``"1bp"``).

    ``b_source="trades"`` compares ``lake_a``'s bars with bars rolled up from the trades
    stored in ``lake_b`` (default: ``lake_a`` itself), for the symbols whose trades it holds
    (default); news, corporate actions and securities are then not compared."""
    tolerance = PriceTolerance.parse(price_tolerance)
    if not 0 <= volume_tolerance < 1:
        raise ValueError(
            f"volume_tolerance must be a relative difference in [0, 1), got {volume_tolerance}"
        )
    if lake_b is None and b_source == "bars":
        raise ValueError("name the second lake, or compare with the first one's trades")
    stores = as_store(lake_a), as_store(lake_b if lake_b is not None else lake_a)
    wanted = None if symbols is None else sorted_symbols(symbols)
    held_b = held_partitions(stores[1], start, end, wanted, b_source)
    if b_source == "trades" and not held_b:
        raise NothingToCompareError(
            f"{stores[1].uri} keeps no trades between {start or 'the start'} and "
            f"{end or 'the end'}"
            + (f" for {', '.join(wanted)}" if wanted else "")
            + "; fetch them with trades.fetch: true (and trades.symbols)"
        )
    if b_source == "trades" and wanted is None:  # the symbols whose trades the lake keeps
        wanted = sorted({symbol for symbol, _ in held_b})
    held = [held_partitions(stores[0], start, end, wanted), held_b]
    common = sorted(held[0] & held[1])
    only = ([], []) if allow_missing else (sorted(held[0] - held[1]), sorted(held[1] - held[0]))
    if not common and not (only[0] or only[1]):
        where = f"between {start or 'the start'} and {end or 'the end'}"
        shared = " in common" if held[0] and held[1] else ""
        raise NothingToCompareError(
            f"{stores[0].uri} and {stores[1].uri} hold no (symbol, session) partition{shared} "
            f"{where}"
            + (f" for {', '.join(wanted)}" if wanted else "")
            + "; check the paths, --symbols and the dates"
        )
    where = ("bars", b_source)
    sources = tuple(
        lake_source(store, min(partitions), area) if partitions else LakeSource(store.uri, "", "")
        for store, partitions, area in zip(stores, held, where, strict=True)
    )
    counts = [
        partition_counts(store, side, area)
        for store, side, area in zip(stores, only, where, strict=True)
    ]
    minutes, summary = _compare_common(stores, common, sources, tolerance, volume_tolerance, where)
    parts = [minutes, partition_differences(only[0], only[1], counts)]
    if b_source == "bars":
        parts.append(security_differences(*stores, wanted))
        parts.append(action_differences(*stores, start, end, wanted))
    if b_source == "bars" and not allow_missing:
        parts.append(dataset_differences(*stores, start, end, wanted))
    differences = _sorted(pa.concat_tables(parts))
    summary = _with_one_sided_rows(summary, only, counts)
    return Reconciliation(
        sources[0], sources[1], differences, summary, tolerance, volume_tolerance, allow_missing
    )


def _compare_common(
    stores: tuple[LakeStore, LakeStore],
    common: list[Partition],
    sources: tuple[LakeSource, ...],
    tolerance: PriceTolerance,
    volume_tolerance: float,
    where: tuple[BarSource, BarSource],
) -> tuple[pa.Table, pa.Table]:
    """Minute-by-minute differences and the summary of the partitions both lakes hold."""
    if not common:
        return DIFFERENCE_SCHEMA.empty_table(), _summary_schema().empty_table()
    bars = [read_partitions(store, common, area) for store, area in zip(stores, where, strict=True)]
    joined = bars[0].join(
        bars[1],
        keys=[SYMBOL_COLUMN, "timestamp"],
        join_type="full outer",
        left_suffix="_a",
        right_suffix="_b",
        coalesce_keys=True,
    )
    flags = _flags(joined, tolerance, volume_tolerance)
    return _differences(joined, flags), _summary(joined, flags, common, sources)


def _flags(joined: pa.Table, price: PriceTolerance, volume: float) -> dict[str, pa.ChunkedArray]:
    """Per joined row and minute kind: whether that row has that difference."""
    in_a, in_b = pc.is_valid(joined["open_a"]), pc.is_valid(joined["open_b"])
    flags = {"missing_in_a": pc.invert(in_a), "missing_in_b": pc.invert(in_b)}
    for name in _VALUES:
        a, b = joined[f"{name}_a"], joined[f"{name}_b"]
        flags[name] = (
            price.differs(a, b) if name in PRICE_FIELDS else relative_differs(a, b, volume)
        )
    return flags


def _differences(joined: pa.Table, flags: dict[str, pa.ChunkedArray]) -> pa.Table:
    parts = []
    for kind in MINUTE_KINDS:
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
                }
            ).cast(DIFFERENCE_SCHEMA)
        )
    return pa.concat_tables(parts)


def _sorted(differences: pa.Table) -> pa.Table:
    """By symbol, time and kind (in :data:`ALL_KINDS` order)."""
    rank = pc.index_in(differences["kind"], pa.array(ALL_KINDS)).cast(pa.int16())
    return (
        differences.append_column("rank", rank)
        .sort_by([(SYMBOL_COLUMN, "ascending"), ("timestamp", "ascending"), ("rank", "ascending")])
        .drop_columns(["rank"])
    )


def _summary(
    joined: pa.Table,
    flags: dict[str, pa.ChunkedArray],
    common: list[tuple[str, dt.date]],
    sources: tuple[LakeSource, ...],
) -> pa.Table:
    """One row per compared symbol-day: minutes, matches, differences by kind, volumes."""
    any_difference = flags["missing_in_a"]
    for kind in MINUTE_KINDS[1:]:
        any_difference = pc.or_(any_difference, flags[kind])
    day = pc.coalesce(joined["day_a"], joined["day_b"])
    columns = {
        SYMBOL_COLUMN: joined[SYMBOL_COLUMN],
        "day": day,
        "minutes_a": pc.is_valid(joined["open_a"]).cast(pa.int64()),
        "minutes_b": pc.is_valid(joined["open_b"]).cast(pa.int64()),
        "matching_minutes": pc.invert(any_difference).cast(pa.int64()),
        **{kind: flags[kind].cast(pa.int64()) for kind in MINUTE_KINDS},
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
        totals = found.get((symbol, day_key(session_day)), {})
        row = dict.fromkeys(PARTITION_KINDS, 0)
        row |= {name: totals.get(f"{name}_sum", 0) for name in counted}
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
    return pa.Table.from_pylist(rows, schema=_summary_schema())


_COUNTED = ("minutes_a", "minutes_b", "matching_minutes", *KINDS)


def _summary_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(SYMBOL_COLUMN, pa.string()),
            pa.field("date", pa.date32()),
            *(pa.field(name, pa.int64()) for name in _COUNTED),
            pa.field("volume_a", pa.float64()),
            pa.field("volume_b", pa.float64()),
            pa.field("volume_ratio", pa.float64()),
            pa.field("notes", pa.string()),
        ]
    )


def _with_one_sided_rows(
    summary: pa.Table, only: tuple[list[Partition], list[Partition]], counts: list[PartitionCounts]
) -> pa.Table:
    """The summary with a row for each partition only one lake holds, sorted."""
    rows = []
    for side, partitions in enumerate(only):
        other = "ab"[1 - side]
        for symbol, day in partitions:
            bars = counts[side].rows.get((symbol, day), 0)
            volume = counts[side].volume.get((symbol, day), 0.0)
            row = dict.fromkeys(_COUNTED, 0)
            row |= {f"minutes_{'ab'[side]}": bars, f"day_missing_in_{other}": 1}
            rows.append(
                {
                    SYMBOL_COLUMN: symbol,
                    "date": day,
                    **row,
                    "volume_a": volume if side == 0 else 0.0,
                    "volume_b": volume if side == 1 else 0.0,
                    "volume_ratio": None,
                    "notes": f"only lake {'AB'[side]} holds this session",
                }
            )
    table = pa.concat_tables([summary, pa.Table.from_pylist(rows, schema=_summary_schema())])
    return table.sort_by([(SYMBOL_COLUMN, "ascending"), ("date", "ascending")])


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
