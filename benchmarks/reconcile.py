"""`marketpipe reconcile` of two lakes of 20 symbols x 3 months (about 1M rows a side).

Target (docs): <= 10 s here. Builds one lake with the real workflow on the bundled
simulator, copies it and changes three bars (a dropped bar, a close, a volume), then times
``reconcile_lakes`` on the pair (median of the rounds) and checks it found exactly three.

    python benchmarks/reconcile.py
    python benchmarks/reconcile.py --symbols 2 --months 1 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, run_workflow, write_results
from fixture_lake import symbols
from requests_floor import MONTH_ENDS

from marketpipe.lake.actions import ACTIONS_DIR
from marketpipe.lake.compare import reconcile_lakes
from marketpipe.lake.news import NEWS_DIR
from marketpipe.lake.storage import LAKE_DIR, parquet_bytes, partition_path, read_verified
from marketpipe.markettime.calendar import trading_sessions


def change_three_bars(lake: Path, tickers: list[str], days: list[dt.date]) -> None:
    """Drop one bar, raise one close by 1% and double one volume, in three partitions."""
    edits = [(tickers[0], days[0], "drop"), (tickers[-1], days[-1], "close")]
    edits.append((tickers[len(tickers) // 2], days[len(days) // 2], "volume"))
    for symbol, day, edit in edits:
        path = partition_path(lake, symbol, day)
        table = read_verified(path, str(path))
        if edit == "drop":
            table = pa.concat_tables([table.slice(0, 10), table.slice(11)])
        else:
            index = table.schema.get_field_index(edit)
            values = table[edit].to_pylist()
            values[10] *= 1.01 if edit == "close" else 2.0
            table = table.set_column(index, table.schema.field(index), [values])
        path.write_bytes(parquet_bytes(table, {}))


def main() -> int:
    """Build the pair of lakes and time the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--months", type=int, default=3, choices=range(1, 7))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    tickers = symbols(args.symbols)
    start, end = dt.date(2024, 1, 2), MONTH_ENDS[args.months - 1]
    with tempfile.TemporaryDirectory(prefix="marketpipe-reconcile-") as scratch:
        workdir = Path(scratch)
        config = {"symbols": tickers, "start": start, "end": end, "data_dir": "lake"}
        config["alpaca"] = {"requests_per_minute": 100_000}
        run_workflow(workdir, config)
        lake_a, lake_b = workdir / "lake", workdir / "copy"
        for area in (LAKE_DIR, NEWS_DIR, ACTIONS_DIR):  # everything reconcile compares
            if (lake_a / area).is_dir():
                shutil.copytree(lake_a / area, lake_b / area)
        days = [session.date for session in trading_sessions(start, end)]
        change_three_bars(lake_b, tickers, days)
        seconds = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            result = reconcile_lakes(lake_a, lake_b)
            seconds.append(time.perf_counter() - started)
        rows = sum(result.summary["minutes_a"].to_pylist())
    found = result.differences["kind"].to_pylist()
    if sorted(found) != ["close", "missing_in_b", "volume"]:
        raise RuntimeError(f"expected the three changed bars, found {found}")
    took = median(seconds)
    print(
        f"{args.symbols} symbols x {args.months} month(s): {rows:,} rows a side, "
        f"{result.summary.num_rows} symbol-days; reconcile {took:.2f} s "
        f"(median of {args.rounds}; target <= 10 s), {rows / took:,.0f} rows/s a side; "
        f"found {found}"
    )
    write_results(
        "reconcile",
        {
            "symbols": args.symbols,
            "months": args.months,
            "rows_a_side": rows,
            "seconds": took,
            "rounds": seconds,
            "differences": found,
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
