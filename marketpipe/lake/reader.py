"""Reading bars back: exactly the files a request needs (see :mod:`marketpipe.lake.read_plan`),
a month file for each whole month where one is current, day files elsewhere."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.actions import actions_of
from marketpipe.lake.adjustment import adjust_bars, adjustment_kinds
from marketpipe.lake.identity import stored_identity
from marketpipe.lake.objects import LakeStore, LocalStore, lake_filesystem
from marketpipe.lake.read_plan import (
    MissingPartitionsError,
    NoLakeError,
    ReadPlan,
    plan_read,
    range_bound,
    sorted_symbols,
)
from marketpipe.lake.securities import series_resolver
from marketpipe.lake.storage import (
    ADJUSTMENT_KEY,
    LAKE_SCHEMA,
    SYMBOL_COLUMN,
    DamagedFileError,
    as_output,
    as_store,
    new_york_day_keys,
    read_table_at,
    repeated_string,
)
from marketpipe.lake.tick_bars import read_trade_bars
from marketpipe.markettime.calendar import Session, new_york_midnight, trading_sessions
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit

__all__ = [
    "MissingPartitionsError",
    "NoLakeError",
    "bar_files",
    "read_bars",
    "resample",
    "scan_bars",
    "sorted_symbols",
]

logger = logging.getLogger(__name__)
# Every page checksum verified: a damaged file fails the read instead of giving wrong rows.
VERIFIED_PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)
# read_bars' outputs: the readers' own, and "wide" (a pandas column per symbol).
BarsOutput = Literal["arrow", "pandas", "polars", "wide"]
_RESAMPLE_UNITS = (TimeframeUnit.MINUTE, TimeframeUnit.HOUR, TimeframeUnit.DAY)


def scan_bars(
    symbols: str | Sequence[str],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    *,
    data_dir: Path | str = "data",
    missing: Literal["error", "skip"] = "error",
) -> ds.Dataset:
    """The lazy form of :func:`read_bars`: a ``pyarrow.dataset`` over exactly the files of the
    range (nothing is read until it is scanned; ``symbol`` comes from the paths).

    Stream it with ``.to_batches()``, filter it, or hand it to ``polars.scan_pyarrow_dataset``
    or DuckDB. Date bounds select whole sessions; apply datetime bounds as a filter.
    """
    lake, entries = _planned_entries(symbols, start, end, data_dir, missing)
    return _dataset(entries, lake)


def bar_files(
    symbols: str | Sequence[str],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    *,
    data_dir: Path | str = "data",
    missing: Literal["error", "skip"] = "error",
) -> list[str]:
    """The files :func:`scan_bars` would read, for engines that read a list of files
    themselves (``polars.scan_parquet(files)``, DuckDB's ``read_parquet([...])``): a month
    file for each whole month of the range where one is current, day files elsewhere, by
    symbol then time; local paths, or ``s3://`` URIs for a lake on S3. The files hold no
    symbol column (their paths name it: ``symbol=S``, the lake's symbol also for a name read
    through a rename); date bounds select whole sessions."""
    lake, entries = _planned_entries(symbols, start, end, data_dir, missing)
    keys = [key for _, key in entries]
    if isinstance(lake, LocalStore):
        return [str(lake.path(key)) for key in keys]
    return [f"{lake.uri}/{key}" for key in keys]


def _planned_entries(
    symbols: str | Sequence[str],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    data_dir: Path | str,
    missing: Literal["error", "skip"],
) -> tuple[LakeStore, list[tuple[str, str]]]:
    """The lake and the (name, key) pairs a lazy read opens, symbols in the order given."""
    lake = as_store(data_dir)
    tickers = [symbols] if isinstance(symbols, str) else list(symbols)
    return lake, plan_read(tickers, start, end, lake, missing, series_resolver(lake)).entries


def _dataset(entries: list[tuple[str, str]], lake: LakeStore) -> ds.Dataset:
    """A dataset over day and month files alike, ``symbol`` the name each is read as."""
    filesystem, root = lake_filesystem(lake)
    fragments = [
        VERIFIED_PARQUET.make_fragment(
            f"{root}/{key}",
            filesystem,
            partition_expression=ds.field(SYMBOL_COLUMN) == name,
        )
        for name, key in entries
    ]
    schema = LAKE_SCHEMA.append(pa.field(SYMBOL_COLUMN, pa.string()))
    return ds.FileSystemDataset(fragments, schema, VERIFIED_PARQUET, filesystem)


def read_bars(
    symbols: str | Sequence[str],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    *,
    data_dir: Path | str = "data",
    columns: Sequence[str] | None = None,
    output: BarsOutput = "arrow",
    missing: Literal["error", "skip"] = "error",
    session: Literal["extended", "regular"] = "extended",
    timeframe: str | None = None,
    adjustment: str = "raw",
    source: Literal["bars", "trades"] = "bars",
) -> Any:
    """The bars of ``symbols`` from ``start`` to ``end``, read from exactly their files.

    ``start``/``end`` are New York trading dates (inclusive) or tz-aware datetimes (naive ones
    are rejected). ``missing="error"`` (the default) raises :class:`MissingPartitionsError`
    naming absent partitions; ``"skip"`` reads what is there. ``session="regular"`` keeps
    09:30 to the close (early closes included). ``timeframe`` (``5Min``, ``1Hour``, ``1Day``
    ...) rolls the minutes up into wider bars aligned to the session's start. ``output`` is
    ``arrow`` (a table sorted by symbol and time), ``pandas`` (a ``(symbol, timestamp)``
    index like alpaca-py's ``.df``, UTC timestamps, plain-string symbols), ``polars``, or
    ``wide`` (pandas, a column per field and symbol: ``wide["close"]`` has one per symbol,
    for vectorbt and the like; no bar is NaN).
    ``adjustment`` (``split``, ``dividend`` or ``all``) applies the corporate actions stored
    in the lake to the raw bars, as of the last run (see :mod:`marketpipe.lake.adjustment`).
    An Arrow table's metadata says what the lake holds (``marketpipe.vendor``, ``.feed``,
    ``.timeframe``, ``.synthetic``: ``true`` for the demo simulator's made-up market).
    ``source="trades"`` rolls the one-minute bars up from the lake's stored trades instead,
    by the vendor's trade-condition rules (see :mod:`marketpipe.lake.tick_bars`): what a
    user does to check a vendor's bars; missing trades days are named as missing bars are.
    """
    kinds = adjustment_kinds(adjustment)
    lake = as_store(data_dir)
    if session not in ("extended", "regular"):
        raise ValueError(f"session must be 'extended' or 'regular', got {session!r}")
    if output not in ("arrow", "pandas", "polars", "wide"):
        raise ValueError(f"output must be 'arrow', 'pandas', 'polars' or 'wide', got {output!r}")
    if source not in ("bars", "trades"):
        raise ValueError(f"source must be 'bars' or 'trades', got {source!r}")
    if source == "trades":
        (first, start_at), (last, end_at) = range_bound(start, "start"), range_bound(end, "end")
        sessions = trading_sessions(first, last)
        table = read_trade_bars(sorted_symbols(symbols), first, last, lake, missing)
    else:
        plan = plan_read(sorted_symbols(symbols), start, end, lake, missing, series_resolver(lake))
        sessions, start_at, end_at = plan.sessions, plan.start_at, plan.end_at
        table = _read_in_order(plan, lake)
        if kinds:
            _require_raw(plan.keys, lake)
    if kinds:
        table = adjust_bars(table, actions_of(lake, sorted_symbols(symbols)), kinds)
    if start_at is not None:
        table = table.filter(pc.greater_equal(table["timestamp"], pa.scalar(start_at)))
    if end_at is not None:
        table = table.filter(pc.less_equal(table["timestamp"], pa.scalar(end_at)))
    if session == "regular":
        table = _regular_hours(table, sessions)
    if timeframe is not None:
        table = resample(table, timeframe, sessions, regular=session == "regular")
    if columns is not None:
        unknown = sorted(set(columns) - set(table.column_names))
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; choose from {table.column_names}")
        keep = [SYMBOL_COLUMN, "timestamp"]
        table = table.select([*keep, *(name for name in columns if name not in keep)])
    held = stored_identity(lake)
    if source == "trades":
        table = table.replace_schema_metadata({"marketpipe.source": "trades"})
    elif held is not None:  # what these bars are: vendor, feed, timeframe, synthetic or not
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **held.metadata()})
    return _convert(table, output)


def _read_in_order(plan: ReadPlan, lake: LakeStore) -> pa.Table:
    """The files' rows, sorted by symbol then time, with the symbol column restored.

    Keys come ordered by symbol, then time, and each file by time; a dataset over an
    explicit file list keeps that order, so no sort is needed (one costs more than the read).
    On S3 the objects are fetched concurrently. A damaged month file is never served: its
    day files are read instead (``marketpipe consolidate`` rebuilds it).
    """
    try:
        return _read_keys(plan.entries, lake)
    except DamagedFileError as error:
        months = {key for key in plan.month_days if f"{lake.uri}/{key}" in error.damaged}
        if not months:
            raise
        logger.warning(
            "damaged month file(s) %s: read from their day files instead",
            ", ".join(sorted(months)),
            extra={"event": "month.damaged"},
        )
        return _read_keys(plan.without_months(months), lake)


def _read_keys(entries: list[tuple[str, str]], lake: LakeStore) -> pa.Table:
    by_symbol: dict[str, list[str]] = {}
    for name, key in entries:
        by_symbol.setdefault(name, []).append(key)
    keys = [key for _, key in entries]
    filesystem, root = lake_filesystem(lake)
    tables = []
    for symbol in sorted(by_symbol):
        files = [f"{root}/{key}" for key in by_symbol[symbol]]
        try:
            table = ds.dataset(
                files, format=VERIFIED_PARQUET, schema=LAKE_SCHEMA, filesystem=filesystem
            ).to_table()
        except (OSError, pa.ArrowException):
            raise _damaged_among(keys, lake) from None  # name every damaged file of the range
        tables.append(
            table.add_column(
                0, OHLCV_SCHEMA.field(SYMBOL_COLUMN), repeated_string(symbol, table.num_rows)
            )
        )
    if not tables:
        return OHLCV_SCHEMA.empty_table()
    return pa.concat_tables(tables).replace_schema_metadata(OHLCV_SCHEMA.metadata)


def _damaged_among(keys: list[str], lake: LakeStore) -> DamagedFileError:
    """Which of ``keys`` are damaged, each read on its own (only after a read failed)."""
    damaged: dict[str, str] = {}
    for key in keys:
        try:
            read_table_at(lake, key)
        except DamagedFileError as error:
            damaged.update(error.damaged)
    return DamagedFileError(damaged or {lake.uri: "a file of the range could not be read"})


def _require_raw(keys: list[str], lake: LakeStore) -> None:
    """Adjusting bars the vendor already adjusted would apply the actions twice."""
    if not keys:
        return
    filesystem, root = lake_filesystem(lake)
    try:
        metadata = pq.read_schema(f"{root}/{keys[0]}", filesystem=filesystem).metadata or {}
    except (OSError, pa.ArrowException):
        raise _damaged_among(keys[:1], lake) from None
    stored = metadata.get(ADJUSTMENT_KEY.encode(), b"raw").decode()
    if stored != "raw":
        raise ValueError(
            f"this lake holds bars the vendor adjusted ({stored!r}, from alpaca.adjustment), "
            "so they cannot be adjusted again; read them with adjustment='raw', or build a "
            "raw lake (alpaca.adjustment: raw) and let reads adjust it"
        )


def _session_index(table: pa.Table, sessions: list[Session]) -> pa.Array:
    """For each row, the position in ``sessions`` of its session (by New York day)."""
    keys = [s.date.year * 10_000 + s.date.month * 100 + s.date.day for s in sessions]
    return pc.index_in(new_york_day_keys(table), value_set=pa.array(keys, pa.int64()))


def _per_row(index: pa.Array, bounds: list[dt.datetime]) -> pa.Array:
    """``bounds[i]`` for each row's session position ``i``, as a timestamp array."""
    return pc.take(pa.array(bounds, pa.timestamp("ns", tz="UTC")), index)


def _regular_hours(table: pa.Table, sessions: list[Session]) -> pa.Table:
    """Rows inside each session's regular hours, [open, close)."""
    if table.num_rows == 0:
        return table
    index = _session_index(table, sessions)
    opens = _per_row(index, [s.open for s in sessions])
    closes = _per_row(index, [s.close for s in sessions])
    stamps = table["timestamp"]
    inside = pc.and_(pc.greater_equal(stamps, opens), pc.less(stamps, closes))
    return table.filter(pc.fill_null(inside, False))


def resample(
    table: pa.Table, timeframe: str, sessions: list[Session], *, regular: bool = False
) -> pa.Table:
    """Roll sorted minute bars up into ``timeframe`` bars aligned to each session's start.

    Buckets start at the session's first minute (04:00 New York, or 09:30 with
    ``regular``) and every ``timeframe`` after; ``1Day`` gives one bar per session stamped at
    New York midnight, as Alpaca stamps daily bars. Open is the first bar's, close the last
    bar's, high and low the extremes, volume and trade count sums, vwap volume-weighted.
    """
    width = Timeframe.parse(timeframe)
    if width.unit not in _RESAMPLE_UNITS:
        raise ValueError(f"timeframe {timeframe!r}: resample to minutes, hours or 1Day")
    if table.num_rows == 0:
        return table
    if width.unit is TimeframeUnit.DAY:
        starts = _per_row(
            _session_index(table, sessions), [new_york_midnight(s.date) for s in sessions]
        )
    else:
        anchors = [s.open if regular else s.extended_window("sip")[0] for s in sessions]
        anchor = pc.cast(_per_row(_session_index(table, sessions), anchors), pa.int64())
        step = (width.seconds or 60) * 10**9
        offset = pc.subtract(pc.cast(table["timestamp"], pa.int64()), anchor)
        bucket = pc.add(anchor, pc.multiply(pc.divide(offset, step), step))
        starts = pc.cast(bucket, pa.timestamp("ns", tz="UTC"))
    weighted = pc.multiply(pc.fill_null(table["vwap"], 0.0), table["volume"])
    grouped = (
        table.append_column("bucket", starts)
        .append_column("weighted", weighted)
        .group_by([SYMBOL_COLUMN, "bucket"], use_threads=False)
        .aggregate(
            [
                ("open", "first"),
                ("high", "max"),
                ("low", "min"),
                ("close", "last"),
                ("volume", "sum"),
                ("trade_count", "sum"),
                ("weighted", "sum"),
            ]
        )
    )
    volume = grouped["volume_sum"]
    vwap = pc.if_else(pc.greater(volume, 0), pc.divide(grouped["weighted_sum"], volume), None)
    result = pa.table(
        {
            SYMBOL_COLUMN: grouped[SYMBOL_COLUMN],
            "timestamp": grouped["bucket"],
            "open": grouped["open_first"],
            "high": grouped["high_max"],
            "low": grouped["low_min"],
            "close": grouped["close_last"],
            "volume": volume,
            "trade_count": grouped["trade_count_sum"],
            "vwap": vwap,
        }
    )
    return result.sort_by([(SYMBOL_COLUMN, "ascending"), ("timestamp", "ascending")])


def _convert(table: pa.Table, output: BarsOutput) -> Any:
    if output == "wide":
        return _wide(table)
    if output == "pandas":
        frame = table.to_pandas()
        frame[SYMBOL_COLUMN] = frame[SYMBOL_COLUMN].astype(str)
        return frame.set_index([SYMBOL_COLUMN, "timestamp"])
    return as_output(table, output)


def _wide(table: pa.Table) -> Any:
    """One pandas column per (field, symbol), indexed by UTC timestamp: ``frame["close"]``
    is a frame of closes with a column per symbol, as vectorbt and pandas users build by
    hand. A minute one symbol has no bar in is NaN (volume too): nothing is filled in."""
    frame = table.to_pandas()
    frame[SYMBOL_COLUMN] = frame[SYMBOL_COLUMN].astype(str)
    fields = [name for name in table.column_names if name not in (SYMBOL_COLUMN, "timestamp")]
    wide = frame.pivot(index="timestamp", columns=SYMBOL_COLUMN, values=fields)
    wide.columns.names = ["field", SYMBOL_COLUMN]
    return wide
