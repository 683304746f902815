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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as fs
import pyarrow.parquet as pq

from marketpipe.connectors.ticks import QUOTES_SCHEMA, TRADES_SCHEMA
from marketpipe.foundation.files import atomic_file
from marketpipe.lake.read_plan import MissingPartitionsError, range_bound, sorted_symbols
from marketpipe.lake.storage import (
    S3_PREFIX,
    SYMBOL_COLUMN,
    WRITER_OPTIONS,
    Output,
    WrittenFile,
    as_output,
    day_prefix,
    file_sha256,
    repeated_string,
)
from marketpipe.markettime.calendar import trading_sessions

TickKind = Literal["trades", "quotes"]
KINDS: tuple[TickKind, ...] = ("trades", "quotes")
ROW_GROUP_ROWS = 1 << 17
_SCHEMAS = {"trades": TRADES_SCHEMA, "quotes": QUOTES_SCHEMA}


def tick_schema(kind: TickKind) -> pa.Schema:
    """The schema of a stored trades or quotes file (no symbol column: the path names it)."""
    schema = _SCHEMAS[kind]
    return schema.remove(schema.get_field_index(SYMBOL_COLUMN))


def _local_root(data_dir: Path | str) -> Path:
    """The lake's directory: trades and quotes are kept in local lakes only, for now."""
    if str(data_dir).startswith(S3_PREFIX):
        raise ValueError(
            f"data_dir {data_dir}: trades and quotes are kept in a local lake only, not yet "
            "on S3; give a local directory"
        )
    return Path(data_dir)


def tick_key(kind: TickKind, symbol: str, day: dt.date) -> str:
    """The key, relative to the lake's root, of one symbol-day's trades or quotes."""
    return f"{day_prefix(kind, symbol, day)}/{kind}.parquet"


def write_tick_day(
    data_dir: Path | str,
    kind: TickKind,
    symbol: str,
    day: dt.date,
    pages: Iterable[pa.Table],
    metadata: dict[str, str] | None = None,
) -> WrittenFile:
    """Stream ``pages`` (canonical rows of ``symbol``) into its ``day`` file, published whole
    at the end; returns its key, rows and sha256."""
    key = tick_key(kind, symbol, day)
    schema = tick_schema(kind).with_metadata(
        {
            b"marketpipe.dataset": kind.encode(),
            b"marketpipe.symbol": symbol.encode(),
            b"marketpipe.day": day.isoformat().encode(),
            **{name.encode(): value.encode() for name, value in (metadata or {}).items()},
        }
    )
    path = _local_root(data_dir) / key
    rows = 0
    with atomic_file(path, "parquet_write") as temporary:
        with pq.ParquetWriter(temporary, schema, **WRITER_OPTIONS) as writer:
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
        sha256 = file_sha256(temporary)
    return WrittenFile(key, rows, sha256)


def tick_files(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    data_dir: Path | str,
    missing: Literal["error", "skip"] = "error",
) -> list[tuple[str, Path]]:
    """(symbol, file) of every session of the range, by symbol then day; absent ones raise
    :class:`MissingPartitionsError` naming them (``missing="skip"``: left out)."""
    first, _ = range_bound(start, "start")
    last, _ = range_bound(end, "end")
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    found, absent = [], []
    for symbol in sorted_symbols(symbols):
        for session in trading_sessions(first, last):
            path = _local_root(data_dir) / tick_key(kind, symbol, session.date)
            if path.exists():
                found.append((symbol, path))
            else:
                absent.append((symbol, session.date))
    if absent and missing == "error":
        raise MissingPartitionsError(absent)
    return found


def scan_ticks(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: Path | str = "data",
    missing: Literal["error", "skip"] = "error",
) -> ds.Dataset:
    """The lazy form of :func:`read_ticks`: a ``pyarrow.dataset`` over exactly the range's
    files, ``symbol`` from their paths (stream it with ``.to_batches()``)."""
    files = tick_files(kind, symbols, start, end, data_dir, missing)
    parquet, local = ds.ParquetFileFormat(), fs.LocalFileSystem()
    fragments = [
        parquet.make_fragment(
            str(path), local, partition_expression=ds.field(SYMBOL_COLUMN) == symbol
        )
        for symbol, path in files
    ]
    schema = tick_schema(kind).append(pa.field(SYMBOL_COLUMN, pa.string()))
    return ds.FileSystemDataset(fragments, schema, parquet, local)


def read_ticks(
    kind: TickKind,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: Path | str = "data",
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
    symbol_field = _SCHEMAS[kind].field(SYMBOL_COLUMN)
    tables = []
    for symbol, path in tick_files(kind, symbols, start, end, data_dir, missing):
        table = pq.read_table(path, columns=chosen)
        tables.append(table.add_column(0, symbol_field, repeated_string(symbol, table.num_rows)))
    schema = pa.schema([symbol_field, *(tick_schema(kind).field(name) for name in chosen)])
    table = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
    return as_output(table, output)


def read_trades(
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: Path | str = "data",
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
    data_dir: Path | str = "data",
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
