"""Trades and quotes in the lake: one file per symbol and New York trading day,
``<data_dir>/trades/symbol=S/year=YYYY/month=MM/day=DD/trades.parquet`` (``quotes`` alike),
written page by page and read back like the bars.

A day's file is streamed: rows go out in row groups of :data:`ROW_GROUP_ROWS` as pages
arrive, so memory holds at most a row group and a page whatever the day's size, and the
file's bytes do not depend on how the vendor paged it. The file appears at its final path
only once whole (see :func:`marketpipe.foundation.files.atomic_file`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from marketpipe.connectors.ticks import QUOTES_SCHEMA, TRADES_SCHEMA
from marketpipe.foundation.files import atomic_file
from marketpipe.lake.ledger import CheckpointStore, TickEntry
from marketpipe.lake.objects import LakeStore, LocalStore, lake_filesystem
from marketpipe.lake.read_plan import MissingPartitionsError, range_bound, sorted_symbols
from marketpipe.lake.storage import (
    SYMBOL_COLUMN,
    WRITER_OPTIONS,
    Output,
    WrittenFile,
    as_output,
    as_store,
    damage_of,
    day_prefix,
    file_sha256,
    present_partitions,
    repeated_string,
)
from marketpipe.markettime.calendar import new_york_midnight, trading_sessions

TickKind = Literal["trades", "quotes"]
KINDS: tuple[TickKind, ...] = ("trades", "quotes")
ROW_GROUP_ROWS = 1 << 17
_SCHEMAS = {"trades": TRADES_SCHEMA, "quotes": QUOTES_SCHEMA}


def tick_schema(kind: TickKind) -> pa.Schema:
    """The schema of a stored trades or quotes file (no symbol column: the path names it)."""
    schema = _SCHEMAS[kind]
    return schema.remove(schema.get_field_index(SYMBOL_COLUMN))


def tick_key(kind: TickKind, symbol: str, day: dt.date) -> str:
    """The key, relative to the lake's root, of one symbol-day's trades or quotes."""
    return f"{day_prefix(kind, symbol, day)}/{kind}.parquet"


def write_tick_day(
    lake: LakeStore | Path | str,
    kind: TickKind,
    symbol: str,
    day: dt.date,
    pages: Iterable[pa.Table],
    metadata: dict[str, str] | None = None,
) -> WrittenFile:
    """Stream ``pages`` (canonical rows of ``symbol``) into its ``day`` file, published whole
    at the end; returns its key, rows and sha256.

    A local lake's file is written beside its final path and renamed over it. An S3 lake's
    is written to a local temporary file and then put in one request (an object appears whole
    or not at all), so memory holds the compressed file, not the day's rows.
    """
    store = as_store(lake)
    key = tick_key(kind, symbol, day)
    if isinstance(store, LocalStore):
        with atomic_file(store.path(key), "parquet_write") as temporary:
            rows = _write_pages(temporary, kind, symbol, day, pages, metadata)
            sha256 = file_sha256(temporary)
        return WrittenFile(key, rows, sha256)
    with tempfile.TemporaryDirectory(prefix="marketpipe-ticks-") as directory:
        temporary = Path(directory) / f"{kind}.parquet"
        rows = _write_pages(temporary, kind, symbol, day, pages, metadata)
        data = temporary.read_bytes()
    store.put(key, data, "parquet_write")
    return WrittenFile(key, rows, hashlib.sha256(data).hexdigest())


def _write_pages(
    path: Path,
    kind: TickKind,
    symbol: str,
    day: dt.date,
    pages: Iterable[pa.Table],
    metadata: dict[str, str] | None,
) -> int:
    """Write ``pages`` to ``path`` in row groups of :data:`ROW_GROUP_ROWS`; the rows written."""
    schema = tick_schema(kind).with_metadata(
        {
            b"marketpipe.dataset": kind.encode(),
            b"marketpipe.symbol": symbol.encode(),
            b"marketpipe.day": day.isoformat().encode(),
            **{name.encode(): value.encode() for name, value in (metadata or {}).items()},
        }
    )
    rows = 0
    with pq.ParquetWriter(path, schema, **WRITER_OPTIONS) as writer:
        pending: list[pa.Table] = []
        held = 0
        for page in pages:
            table = pa.Table.from_arrays([page[name] for name in schema.names], schema=schema)
            pending.append(table)
            held += table.num_rows
            rows += table.num_rows
            while held >= ROW_GROUP_ROWS:
                whole = pa.concat_tables(pending)
                writer.write_table(whole.slice(0, ROW_GROUP_ROWS), ROW_GROUP_ROWS)
                rest = whole.slice(ROW_GROUP_ROWS)
                pending, held = [rest], rest.num_rows
        if held:
            writer.write_table(pa.concat_tables(pending), ROW_GROUP_ROWS)
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows


def present_tick_days(
    lake: LakeStore | Path | str, kind: TickKind, symbols: Sequence[str] | None
) -> set[tuple[str, dt.date]]:
    """Every (symbol, day) of ``symbols`` (``None``: all) with a ``kind`` file, by listing."""
    return present_partitions(lake, symbols, area=kind)


def tick_files(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    lake: LakeStore | Path | str,
    missing: Literal["error", "skip"] = "error",
) -> list[tuple[str, str]]:
    """(symbol, key) of every session of the range, by symbol then day, found by one listing
    per symbol; absent ones raise :class:`MissingPartitionsError` naming them
    (``missing="skip"``: left out)."""
    first, _ = range_bound(start, "start")
    last, _ = range_bound(end, "end")
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    wanted = sorted_symbols(symbols)
    years = list(range(first.year, last.year + 1))
    present = present_partitions(lake, wanted, area=kind, years=years)
    found, absent = [], []
    for symbol in wanted:
        for session in trading_sessions(first, last):
            if (symbol, session.date) in present:
                found.append((symbol, tick_key(kind, symbol, session.date)))
            else:
                absent.append((symbol, session.date))
    if absent and missing == "error":
        raise MissingPartitionsError(absent, kind)
    return found


def scan_ticks(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: LakeStore | Path | str = "data",
    missing: Literal["error", "skip"] = "error",
) -> ds.Dataset:
    """The lazy form of :func:`read_ticks`: a ``pyarrow.dataset`` over exactly the range's
    files, ``symbol`` from their paths (stream it with ``.to_batches()``)."""
    lake = as_store(data_dir)
    files = tick_files(kind, symbols, start, end, lake, missing)
    filesystem, root = lake_filesystem(lake)
    parquet = ds.ParquetFileFormat()
    fragments = [
        parquet.make_fragment(
            f"{root}/{key}", filesystem, partition_expression=ds.field(SYMBOL_COLUMN) == symbol
        )
        for symbol, key in files
    ]
    schema = tick_schema(kind).append(pa.field(SYMBOL_COLUMN, pa.string()))
    return ds.FileSystemDataset(fragments, schema, parquet, filesystem)


def read_ticks(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: LakeStore | Path | str = "data",
    columns: Sequence[str] | None = None,
    output: Output = "arrow",
    missing: Literal["error", "skip"] = "error",
) -> Any:
    """The ``kind`` prints of ``symbols`` from ``start`` to ``end`` (New York trading dates,
    inclusive), sorted by symbol then time, ``symbol`` first."""
    names = tick_schema(kind).names
    chosen = list(columns) if columns is not None else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; choose from {names}")
    lake = as_store(data_dir)
    filesystem, root = lake_filesystem(lake)
    symbol_field = _SCHEMAS[kind].field(SYMBOL_COLUMN)
    tables = []
    for symbol, key in tick_files(kind, symbols, start, end, lake, missing):
        table = pq.read_table(f"{root}/{key}", columns=chosen, filesystem=filesystem)
        tables.append(table.add_column(0, symbol_field, repeated_string(symbol, table.num_rows)))
    schema = pa.schema([symbol_field, *(tick_schema(kind).field(name) for name in chosen)])
    table = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
    return as_output(table, output)


def read_trades(
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: LakeStore | Path | str = "data",
    columns: Sequence[str] | None = None,
    output: Output = "arrow",
    missing: Literal["error", "skip"] = "error",
) -> Any:
    """The stored trades of ``symbols`` from ``start`` to ``end`` (see :func:`read_ticks`)."""
    return read_ticks(
        "trades",
        symbols,
        start,
        end,
        data_dir=data_dir,
        columns=columns,
        output=output,
        missing=missing,
    )


def read_quotes(
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: LakeStore | Path | str = "data",
    columns: Sequence[str] | None = None,
    output: Output = "arrow",
    missing: Literal["error", "skip"] = "error",
) -> Any:
    """The stored quotes of ``symbols`` from ``start`` to ``end`` (see :func:`read_ticks`)."""
    return read_ticks(
        "quotes",
        symbols,
        start,
        end,
        data_dir=data_dir,
        columns=columns,
        output=output,
        missing=missing,
    )


def adopt_unrecorded_ticks(
    lake: LakeStore | Path | str,
    store: CheckpointStore,
    run_id: str,
    kinds: Sequence[TickKind] = KINDS,
    symbols: Sequence[str] | None = None,
    days: Collection[dt.date] | None = None,
) -> list[TickEntry]:
    """Record tick files the ledger does not know (a crash between a file and its row, a job
    on another machine, a lost ledger); forget rows whose file is gone. A file is whole by
    construction (atomic writes), so its bytes are what the row records. ``symbols`` and
    ``days`` (``None``: all) bound what is looked at: a job reads only its own days' files."""
    lake = as_store(lake)
    adopted = []
    for kind in kinds:
        present = {
            (symbol, day)
            for symbol, day in present_tick_days(lake, kind, symbols)
            if days is None or day in days
        }
        recorded = {
            (symbol, day)
            for (_, symbol, day) in store.tick_entries(kind)
            if (symbols is None or symbol in symbols) and (days is None or day in days)
        }
        for symbol, day in sorted(present - recorded):
            entry = stored_tick_entry(lake, kind, symbol, day, run_id)
            store.record_ticks(entry)
            adopted.append(entry)
        gone: dict[str, list[dt.date]] = {}
        for symbol, day in sorted(recorded - present):
            gone.setdefault(symbol, []).append(day)
        for symbol, days in gone.items():
            store.forget_ticks(kind, symbol, days)
    return adopted


def stored_tick_entry(
    lake: LakeStore, kind: TickKind, symbol: str, day: dt.date, run_id: str
) -> TickEntry:
    """The ledger row of a stored tick file, read from the file: its rows and sha256."""
    key = tick_key(kind, symbol, day)
    if isinstance(lake, LocalStore):
        path = lake.path(key)
        rows = pq.read_metadata(path).num_rows
        sha256 = file_sha256(path)
    else:
        data = lake.get(key)
        rows = pq.read_metadata(pa.BufferReader(data)).num_rows
        sha256 = hashlib.sha256(data).hexdigest()
    return TickEntry(kind, symbol, day, rows, sha256, run_id)


def tick_file_problems(
    lake: LakeStore, kind: TickKind, symbol: str, day: dt.date, sha256: str | None
) -> list[str]:
    """What is wrong with a stored tick file: bytes other than the ledger's ``sha256``
    (``None``: no row records it), unreadable pages, another schema, a footer naming another
    symbol or day, prints outside its New York day or out of time order."""
    entry = stored_tick_entry(lake, kind, symbol, day, "")
    problems = []
    if sha256 is None:
        problems.append("no ledger row records this file")
    elif entry.sha256 != sha256:
        problems.append("content differs from the ledger (sha256)")
    filesystem, root = lake_filesystem(lake)
    try:
        file = pq.ParquetFile(
            f"{root}/{tick_key(kind, symbol, day)}",
            filesystem=filesystem,
            page_checksum_verification=True,
        )
        footer = {k.decode(): v.decode() for k, v in (file.schema_arrow.metadata or {}).items()}
        if not file.schema_arrow.remove_metadata().equals(tick_schema(kind)):
            return [*problems, f"schema differs from the stored {kind} schema"]
        named = (footer.get("marketpipe.symbol"), footer.get("marketpipe.day"))
        if named != (symbol, day.isoformat()):
            problems.append(f"its footer names {named[0]} {named[1]}, not the path's")
        first = new_york_midnight(day)
        last = new_york_midnight(day + dt.timedelta(days=1))
        previous = None
        for batch in file.iter_batches(columns=["timestamp"], use_threads=False):
            times = batch.column(0)
            if not len(times):
                continue
            low, high = pc.min_max(times).values()
            if low.as_py() < first or high.as_py() >= last:
                problems.append(f"holds prints outside New York {day}")
                break
            ordered = pc.all(pc.less_equal(times[:-1], times[1:])).as_py() is not False
            if not ordered or (previous is not None and times[0].as_py() < previous):
                problems.append("its prints are not in time order")
                break
            previous = times[-1].as_py()
    except (OSError, pa.ArrowException) as exc:
        problems.append(damage_of(exc))
    return problems
