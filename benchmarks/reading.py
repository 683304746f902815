"""Reading speed: `read_bars` against one Parquet file and against the usual readers.

Targets (README): on a 100-symbol x 5-year lake (~126k partitions), `read_bars` for one
symbol-year <= 3x the time of the same rows in one Parquet file; for one symbol-month and
one symbol-year >= 20x faster than pyarrow.dataset discovery + filter; the one-month read
under 50 ms. The lake's other symbols hold empty files: discovery costs per file, not per row.

    python benchmarks/reading.py                        # 100 symbols x 5 years
    python benchmarks/reading.py --symbols 3 --years 1  # smoke run
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lake_size_parser, median, write_results
from fixture_lake import symbols, write_fixture_lake

from marketpipe.connectors.alpaca import bars_table
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import LAKE_DIR, partition_path, write_partition
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SyntheticMarket


def _write_real_year(data_dir: Path, ticker: str, year: int) -> pa.Table:
    """Real synthetic minute bars for ``ticker``'s sessions of ``year``; returns all rows."""
    market, minute, tables = SyntheticMarket(seed=0), Timeframe.parse("1Min"), []
    for session in trading_sessions(dt.date(year, 1, 1), dt.date(year, 12, 31)):
        bars = market.bars(ticker, session, "sip", minute)
        rows = [
            {
                "t": dt.datetime.fromtimestamp(b.t, dt.UTC).isoformat().replace("+00:00", "Z"),
                "o": b.o,
                "h": b.h,
                "l": b.l,
                "c": b.c,
                "v": b.v,
                "n": b.n,
                "vw": b.vw,
            }
            for b in bars
        ]
        table = bars_table([(ticker, rows)], "fixture")
        metadata = {"marketpipe.symbol": ticker, "marketpipe.day": session.date.isoformat()}
        write_partition(partition_path(data_dir, ticker, session.date), table, metadata)
        tables.append(table)
    return pa.concat_tables(tables)


def _best(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` runs (after one warm-up), and the last result."""
    result = action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return median(times), result


def main() -> int:
    """Measure each reader on the same question and print a table."""
    parser = lake_size_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    first_year = 2020
    read_year = first_year + args.years - 1
    tickers = symbols(args.symbols)
    target = tickers[0]
    results: dict[str, Any] = {"symbols": args.symbols, "years": args.years}
    with tempfile.TemporaryDirectory(prefix="marketpipe-read-") as scratch:
        data_dir = Path(scratch) / "lake"
        end = dt.date(first_year + args.years - 1, 12, 31)
        results["partitions"] = write_fixture_lake(
            data_dir, tickers[1:], dt.date(first_year, 1, 1), end
        )
        for year in range(first_year, read_year):
            write_fixture_lake(data_dir, [target], dt.date(year, 1, 1), dt.date(year, 12, 31))
        year_rows = _write_real_year(data_dir, target, read_year)
        results["partitions"] += len(trading_sessions(dt.date(first_year, 1, 1), end))
        one_file = Path(scratch) / "one.parquet"
        pq.write_table(year_rows, one_file)
        lake = data_dir / LAKE_DIR
        year_span = (dt.date(read_year, 1, 1), dt.date(read_year, 12, 31))
        month_span = (dt.date(read_year, 3, 1), dt.date(read_year, 3, 31))
        in_year = (ds.field("symbol") == target) & (ds.field("year") == read_year)
        in_month = in_year & (ds.field("month") == 3)
        cases: dict[str, Callable[[], Any]] = {
            "one_file_year": lambda: pq.read_table(one_file),
            "read_bars_year": lambda: read_bars(target, *year_span, data_dir=data_dir),
            "read_bars_month": lambda: read_bars(target, *month_span, data_dir=data_dir),
            "pyarrow_discovery_year": lambda: ds.dataset(lake, partitioning="hive").to_table(
                filter=in_year
            ),
            "pyarrow_discovery_month": lambda: ds.dataset(lake, partitioning="hive").to_table(
                filter=in_month
            ),
        }
        try:
            import duckdb
            import polars as pl

            glob = f"{lake}/*/*/*/*/*.parquet"
            cases["polars_year"] = lambda: (
                pl.scan_parquet(f"{lake}/**/*.parquet", hive_partitioning=True)
                .filter((pl.col("symbol") == target) & (pl.col("year") == read_year))
                .collect()
            )
            cases["duckdb_year"] = lambda: duckdb.sql(
                f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true) "
                f"WHERE symbol = '{target}' AND year = {read_year}"
            ).to_arrow_table()
        except ImportError:  # polars and DuckDB are development extras
            pass
        rows = {}
        for name, action in cases.items():
            seconds, result = _best(action, args.repeats)
            results[f"{name}_s"] = seconds
            rows[name] = len(result)
        assert rows["read_bars_year"] == rows["one_file_year"] == rows["pyarrow_discovery_year"]
    year_ratio = results["read_bars_year_s"] / results["one_file_year_s"]
    discovery_year = results["pyarrow_discovery_year_s"] / results["read_bars_year_s"]
    discovery_month = results["pyarrow_discovery_month_s"] / results["read_bars_month_s"]
    results.update(
        read_bars_vs_one_file=year_ratio,
        discovery_vs_read_bars_year=discovery_year,
        discovery_vs_read_bars_month=discovery_month,
        rows_year=rows["read_bars_year"],
    )
    print(
        f"{args.symbols} symbols x {args.years} year(s): {results['partitions']:,} partitions;"
        f" one symbol-year = {rows['read_bars_year']:,} rows"
    )
    for name in cases:
        print(f"  {name:<26} {results[f'{name}_s'] * 1000:>9.1f} ms")
    print(f"read_bars year / one file: {year_ratio:.2f}x (target <= 3)")
    print(
        f"discovery / read_bars: year {discovery_year:.0f}x, month {discovery_month:.0f}x "
        f"(target >= 20); month read {results['read_bars_month_s'] * 1000:.1f} ms "
        "(target < 50)"
    )
    write_results("reading", results, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
