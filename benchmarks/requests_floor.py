"""API requests for a backfill, against the floor ceil(total_bars / 10000).

Target (README): 20 symbols x 3 months of 1-minute sip bars, requests / floor <= 1.10.
Runs the real workflow on the bundled simulator and counts the requests it served.

    python benchmarks/requests_floor.py
    python benchmarks/requests_floor.py --symbols 2 --months 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_workflow, write_results
from fixture_lake import symbols

MONTH_ENDS = [
    dt.date(2024, 1, 31),
    dt.date(2024, 2, 29),
    dt.date(2024, 3, 28),
    dt.date(2024, 4, 30),
    dt.date(2024, 5, 31),
    dt.date(2024, 6, 28),
]


def main() -> int:
    """Run the backfill and compare its request count with the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--months", type=int, default=3, choices=range(1, 7))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marketpipe-floor-") as scratch:
        workdir = Path(scratch)
        config = {
            "symbols": symbols(args.symbols),
            "start": dt.date(2024, 1, 2),
            "end": MONTH_ENDS[args.months - 1],
            "data_dir": "lake",
            "alpaca": {"requests_per_minute": 100_000},
        }
        elapsed, served = run_workflow(workdir, config)
    bars = sum(entry.bars for entry in served)
    floor = math.ceil(bars / 10_000)
    ratio = len(served) / floor
    print(f"{args.symbols} symbols x {args.months} month(s): {bars:,} bars")
    print(
        f"requests {len(served)}, floor {floor}, ratio {ratio:.3f} (target <= 1.10), "
        f"{elapsed:.1f}s, {bars / elapsed:,.0f} rows/s end to end"
    )
    write_results(
        "requests_floor",
        {
            "symbols": args.symbols,
            "months": args.months,
            "bars": bars,
            "requests": len(served),
            "floor": floor,
            "ratio": ratio,
            "seconds": elapsed,
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
