"""Write a lake's partition files quickly, without fetching (for planning benchmarks)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa

from marketpipe.lake.storage import LAKE_SCHEMA, parquet_bytes, partition_path
from marketpipe.markettime.calendar import trading_sessions


def symbols(count: int) -> list[str]:
    """``count`` synthetic tickers S000, S001, ..."""
    return [f"S{index:03d}" for index in range(count)]


def write_fixture_lake(data_dir: Path, tickers: list[str], start: dt.date, end: dt.date) -> int:
    """One small valid partition file per symbol and session; returns how many were written."""
    data = parquet_bytes(pa.Table.from_pylist([], schema=LAKE_SCHEMA), {})
    written = 0
    for session in trading_sessions(start, end):
        for ticker in tickers:
            path = partition_path(data_dir, ticker, session.date)
            os.makedirs(path.parent, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
            written += 1
    return written
