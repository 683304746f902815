"""Reading the lake back with every common reader, to compare what they return."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import LAKE_DIR

COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def canonical(table: pa.Table) -> pa.Table:
    """The rows as plain Arrow: string symbols, UTC nanosecond stamps, sorted."""
    columns = {
        "symbol": pc.cast(table["symbol"], pa.string()),
        "timestamp": pc.cast(table["timestamp"], pa.timestamp("ns", tz="UTC")),
        **{name: pc.cast(table[name], pa.float64()) for name in COLUMNS[2:7]},
        "trade_count": pc.cast(table["trade_count"], pa.int64()),
        "vwap": pc.cast(table["vwap"], pa.float64()),
    }
    plain = pa.table(columns)
    return plain.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def assert_every_reader_agrees(data_dir: Path) -> int:
    """pandas, pq.read_table, pyarrow.dataset, polars and DuckDB, each with no extra
    arguments, return the ledger's rows with the same values; returns the row count."""
    lake = data_dir / LAKE_DIR
    with CheckpointStore(data_dir) as store:
        rows = sum(entry.rows for entry in store.all_entries())
    readers = {
        "pyarrow.dataset": lambda: ds.dataset(lake, partitioning="hive").to_table(),
        "pq.read_table": lambda: pq.read_table(lake),
        "pandas": lambda: pa.Table.from_pandas(pd.read_parquet(lake), preserve_index=False),
        "polars": lambda: (
            pl.scan_parquet(f"{lake}/**/*.parquet", hive_partitioning=True).collect().to_arrow()
        ),
        "duckdb": lambda: duckdb.sql(
            f"SELECT * FROM read_parquet('{lake}/*/*/*/*/*.parquet', hive_partitioning=true)"
        ).to_arrow_table(),
    }
    tables = {name: canonical(read()) for name, read in readers.items()}
    expected = tables.pop("pyarrow.dataset")
    assert expected.num_rows == rows
    for name, table in tables.items():
        assert table.equals(expected), f"{name} differs"
    return rows
