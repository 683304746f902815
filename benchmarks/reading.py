"""Reading speed at lake scale: `read_bars` / `scan_bars` against one Parquet file and
against the usual readers' discovery, with and without the consolidated month files.

Targets (docs): on a 100-symbol x 5-year lake (125,800 real-sized day files, every one a
full extended session of minute bars): `read_bars` of one symbol-year <= 3x the same rows
in one file, one symbol-month < 50 ms; a full scan (`scan_bars` to Arrow, or a polars /
DuckDB query over its files, `bar_files`) <= 3x the same rows in one file per symbol and
>= 20x faster than pyarrow / polars / DuckDB discovery over the day files. Consolidation's
time is reported. Every ratio is measured side by side in this one run.

    python benchmarks/reading.py                        # 100 symbols x 5 years
    python benchmarks/reading.py --symbols 3 --years 1  # smoke run
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lake_size_parser, median, write_results
from fixture_lake import symbols, write_real_lake

from marketpipe.lake.consolidated import consolidate
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.reader import bar_files, read_bars, scan_bars
from marketpipe.lake.storage import LAKE_DIR, parquet_bytes

COLUMNS = ["close", "volume"]  # what the full scans read (a research query's columns)


def _best(action: Callable[[], Any], repeats: int, warm_up: bool = True) -> tuple[float, Any]:
    """Median seconds of ``repeats`` runs (after one warm-up), and the last result."""
    result = action() if warm_up else None
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return median(times), result


def _size(result: Any) -> int:
    """Rows of an Arrow table or polars frame, or the row count a scan query returned."""
    if hasattr(result, "num_rows"):
        return int(result.num_rows)
    if isinstance(result, list):  # DuckDB's fetchall of count(*), ...
        return int(result[0][0])
    return int(result["len"][0]) if "len" in result.columns else int(result.height)


def main() -> int:
    """Build the lake, consolidate it, measure each reader on the same questions."""
    parser = lake_size_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="processes writing the lake")
    args = parser.parse_args()
    first, last = dt.date(2020, 1, 1), dt.date(2020 + args.years - 1, 12, 31)
    read_year = last.year
    tickers = symbols(args.symbols)
    target = tickers[0]
    results: dict[str, Any] = {"symbols": args.symbols, "years": args.years}
    with tempfile.TemporaryDirectory(prefix="marketpipe-read-") as scratch:
        lake = Path(scratch) / "lake"
        began = time.perf_counter()
        results["rows"] = write_real_lake(lake, tickers, first, last, args.workers)
        results["fixture_write_s"] = time.perf_counter() - began
        # The same day files without month files: a second root whose ohlcv/ is the lake's.
        days_only = Path(scratch) / "days_only"
        days_only.mkdir()
        os.symlink(lake / LAKE_DIR, days_only / LAKE_DIR)
        began = time.perf_counter()
        with CheckpointStore(lake) as store:
            report = consolidate(LocalStore(lake), store)
        results["consolidate_s"] = time.perf_counter() - began
        results["month_files"] = len(report.built)
        # Let the kernel write the ~4 GB just written back to disk before timing reads:
        # writeback competing with the reads made the first runs' timings swing 2x.
        os.sync()
        results["partitions"] = len(list((lake / LAKE_DIR).rglob("*.parquet")))
        year = (dt.date(read_year, 1, 1), dt.date(read_year, 12, 31))
        month = (dt.date(read_year, 3, 1), dt.date(read_year, 3, 31))
        year_rows = read_bars(target, *year, data_dir=days_only)
        one_year = Path(scratch) / "one_year.parquet"
        one_year.write_bytes(parquet_bytes(year_rows.drop_columns(["symbol"]), {}))
        one_files = sorted(str(path) for path in (Path(scratch) / "one_file_per_symbol").iterdir())
        day_glob = f"{lake / LAKE_DIR}/*/*/*/*/*.parquet"
        in_year = (ds.field("symbol") == target) & (ds.field("year") == read_year)
        in_month = in_year & (ds.field("month") == 3)
        discovery = lambda: ds.dataset(lake / LAKE_DIR, partitioning="hive")  # noqa: E731
        everything = (tickers, first, last)
        cases: dict[str, Callable[[], Any]] = {
            "one_file_year": lambda: pq.read_table(one_year),
            "read_bars_year": lambda: read_bars(target, *year, data_dir=lake),
            "read_bars_year_day_files": lambda: read_bars(target, *year, data_dir=days_only),
            "read_bars_month": lambda: read_bars(target, *month, data_dir=lake),
            "pyarrow_discovery_year": lambda: discovery().to_table(filter=in_year),
            "pyarrow_discovery_month": lambda: discovery().to_table(filter=in_month),
        }
        full: dict[str, Callable[[], Any]] = {
            "one_file_per_symbol_full_arrow": lambda: ds.dataset(one_files).to_table(COLUMNS),
            "scan_bars_full_arrow": lambda: scan_bars(*everything, data_dir=lake).to_table(COLUMNS),
            "scan_bars_day_files_full_arrow": lambda: scan_bars(
                *everything, data_dir=days_only
            ).to_table(COLUMNS),
            "pyarrow_discovery_full_arrow": lambda: discovery().to_table(COLUMNS),
        }
        try:
            import duckdb
            import polars as pl

            query = [pl.len(), pl.col("close").mean(), pl.col("volume").sum()]
            cases["polars_year"] = lambda: (
                pl.scan_parquet(f"{lake / LAKE_DIR}/**/*.parquet", hive_partitioning=True)
                .filter((pl.col("symbol") == target) & (pl.col("year") == read_year))
                .collect()
            )
            cases["duckdb_year"] = lambda: duckdb.sql(
                f"SELECT * FROM read_parquet('{day_glob}', hive_partitioning=true) "
                f"WHERE symbol = '{target}' AND year = {read_year}"
            ).to_arrow_table()
            sql = "SELECT count(*), avg(close), sum(volume) FROM"
            full.update(
                {
                    "one_file_per_symbol_full_polars": lambda: (
                        pl.scan_parquet(one_files).select(query).collect()
                    ),
                    "bar_files_full_polars": lambda: (
                        pl.scan_parquet(bar_files(*everything, data_dir=lake))
                        .select(query)
                        .collect()
                    ),
                    "scan_bars_full_polars": lambda: (
                        pl.scan_pyarrow_dataset(scan_bars(*everything, data_dir=lake))
                        .select(query)
                        .collect()
                    ),
                    "polars_discovery_full": lambda: (
                        pl.scan_parquet(f"{lake / LAKE_DIR}/**/*.parquet", hive_partitioning=True)
                        .select(query)
                        .collect()
                    ),
                    "one_file_per_symbol_full_duckdb": lambda: duckdb.sql(
                        f"{sql} read_parquet({one_files!r})"
                    ).fetchall(),
                    "bar_files_full_duckdb": lambda: duckdb.sql(
                        f"{sql} read_parquet({bar_files(*everything, data_dir=lake)!r})"
                    ).fetchall(),
                    "scan_bars_full_duckdb": lambda: _duckdb_scan(
                        duckdb, sql, scan_bars(*everything, data_dir=lake)
                    ),
                    "duckdb_discovery_full": lambda: duckdb.sql(
                        f"{sql} read_parquet('{day_glob}', hive_partitioning=true)"
                    ).fetchall(),
                }
            )
        except ImportError:  # polars and DuckDB are development extras
            pass
        rows = {}
        for name, action in cases.items():
            seconds, result = _best(action, args.repeats)
            results[f"{name}_s"] = seconds
            rows[name] = _size(result)
        for name, action in full.items():
            # One timed run each (after the page cache is warm): the discovery scans take
            # minutes over 125,800 files.
            seconds, result = _best(action, 1, warm_up=False)
            results[f"{name}_s"] = seconds
            rows[name] = _size(result)
    assert rows["read_bars_year"] == rows["one_file_year"] == rows["pyarrow_discovery_year"]
    assert len({count for name, count in rows.items() if "full" in name}) == 1, rows
    _summarise(results, rows, cases, full)
    write_results("reading", results, args.output)
    return 0


def _duckdb_scan(duckdb: Any, sql: str, dataset: ds.Dataset) -> list[tuple]:
    """DuckDB's query over a ``scan_bars`` dataset (it scans the Arrow dataset lazily)."""
    bars = dataset  # noqa: F841  (DuckDB finds the Python variable by name)
    return duckdb.sql(f"{sql} bars").fetchall()


def _summarise(
    results: dict[str, Any],
    rows: dict[str, int],
    cases: dict[str, Callable[[], Any]],
    full: dict[str, Callable[[], Any]],
) -> None:
    """Add the ratios the targets are about, and print the table."""
    ratio = {
        "read_bars_vs_one_file": ("read_bars_year", "one_file_year"),
        "day_files_vs_one_file": ("read_bars_year_day_files", "one_file_year"),
        "discovery_vs_read_bars_year": ("pyarrow_discovery_year", "read_bars_year"),
        "discovery_vs_read_bars_month": ("pyarrow_discovery_month", "read_bars_month"),
        "full_scan_vs_one_file_arrow": ("scan_bars_full_arrow", "one_file_per_symbol_full_arrow"),
        "full_scan_day_files_vs_one_file_arrow": (
            "scan_bars_day_files_full_arrow",
            "one_file_per_symbol_full_arrow",
        ),
        "discovery_vs_full_scan_arrow": ("pyarrow_discovery_full_arrow", "scan_bars_full_arrow"),
        "full_scan_vs_one_file_polars": (
            "bar_files_full_polars",
            "one_file_per_symbol_full_polars",
        ),
        "discovery_vs_full_scan_polars": ("polars_discovery_full", "bar_files_full_polars"),
        "full_scan_vs_one_file_duckdb": (
            "bar_files_full_duckdb",
            "one_file_per_symbol_full_duckdb",
        ),
        "discovery_vs_full_scan_duckdb": ("duckdb_discovery_full", "bar_files_full_duckdb"),
        "discovery_vs_one_file_arrow": (
            "pyarrow_discovery_full_arrow",
            "one_file_per_symbol_full_arrow",
        ),
        "discovery_vs_one_file_polars": (
            "polars_discovery_full",
            "one_file_per_symbol_full_polars",
        ),
        "discovery_vs_one_file_duckdb": (
            "duckdb_discovery_full",
            "one_file_per_symbol_full_duckdb",
        ),
    }
    for name, (numerator, denominator) in ratio.items():
        if f"{numerator}_s" in results and f"{denominator}_s" in results:
            results[name] = results[f"{numerator}_s"] / results[f"{denominator}_s"]
    results["rows_year"] = rows["read_bars_year"]
    results["rows_full"] = rows["scan_bars_full_arrow"]
    print(
        f"{results['symbols']} symbols x {results['years']} year(s): {results['partitions']:,} "
        f"day files, {results['rows']:,} rows (written in {results['fixture_write_s']:.0f} s); "
        f"{results['month_files']:,} month files built by consolidate in "
        f"{results['consolidate_s']:.1f} s"
    )
    for name in [*cases, *full]:
        print(f"  {name:<34} {results[f'{name}_s'] * 1000:>10.1f} ms  {rows[name]:>12,} rows")
    for name in ratio:
        if name in results:
            print(f"  {name:<40} {results[name]:>8.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
