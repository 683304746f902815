"""API requests for a backfill, against the vendor's floor.

Target (docs): 20 symbols x 3 months of 1-minute sip bars, requests / floor <= 1.10. The
floor is the fewest requests the vendor's API allows for those bars: ceil(total_bars /
10000) for Alpaca (a page holds up to 10,000 bars of several symbols), and for Polygon, one
ticker per request with up to 50,000 (minute) bars a page, the sum over tickers of
ceil(ticker_bars / 50000). Runs the real workflow on the simulator and counts the requests
it served.

    python benchmarks/requests_floor.py [--vendor polygon]
    python benchmarks/requests_floor.py --symbols 2 --months 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_workflow, write_results
from fixture_lake import symbols

from marketpipe.simulator.process import simulator_subprocess

POLYGON_PAGE = 50_000  # base bars a Polygon aggregates page holds at most
MONTH_ENDS = [
    dt.date(2024, 1, 31),
    dt.date(2024, 2, 29),
    dt.date(2024, 3, 28),
    dt.date(2024, 4, 30),
    dt.date(2024, 5, 31),
    dt.date(2024, 6, 28),
]


BAR_PATHS = ("/v2/stocks/bars", "/v2/aggs/ticker/")


def polygon_floor(served: list) -> int:
    """The fewest aggregates requests Polygon allows for the bars served: one ticker per
    request, 50,000 base (minute) bars a page."""
    by_ticker: dict[str, int] = {}
    for entry in served:
        if entry.path.startswith("/v2/aggs/ticker/"):
            ticker = entry.path.split("/")[4]
            by_ticker[ticker] = by_ticker.get(ticker, 0) + entry.bars
    return sum(max(1, math.ceil(bars / POLYGON_PAGE)) for bars in by_ticker.values())


def main() -> int:
    """Run the backfill and compare its request count with the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--months", type=int, default=3, choices=range(1, 7))
    parser.add_argument("--vendor", choices=["demo", "polygon"], default="demo")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    config = {
        "symbols": symbols(args.symbols),
        "start": dt.date(2024, 1, 2),
        "end": MONTH_ENDS[args.months - 1],
        "data_dir": "lake",
        "alpaca": {"requests_per_minute": 100_000},
        # Bars only: the floor is about bar pages (news and corporate actions have their own
        # endpoints and requests, counted by incremental.py).
        "news": {"fetch": False},
        "corporate_actions": {"fetch": False},
    }
    with tempfile.TemporaryDirectory(prefix="marketpipe-floor-") as scratch:
        workdir = Path(scratch)
        if args.vendor == "demo":
            elapsed, served = run_workflow(workdir, config)
            floor = math.ceil(sum(entry.bars for entry in served) / 10_000)
        else:
            log = workdir / "polygon-requests.jsonl"
            env = {**os.environ, "POLYGON_API_KEY": "benchmark"}
            with simulator_subprocess("--log-file", str(log), "--rate-limit", "0") as url:
                polygon = {"base_url": url, "requests_per_minute": 100_000}
                config |= {"vendor": "polygon", "polygon": polygon}
                elapsed, served = run_workflow(workdir, config, env=env, request_log=log)
            floor = polygon_floor(served)
    # Bars only: the security master's reference requests are the run's, not the bars'.
    other = [entry for entry in served if not entry.path.startswith(BAR_PATHS)]
    served = [entry for entry in served if entry.path.startswith(BAR_PATHS)]
    bars = sum(entry.bars for entry in served)
    ratio = len(served) / floor
    print(f"{args.vendor}: {args.symbols} symbols x {args.months} month(s): {bars:,} bars")
    print(
        f"requests {len(served)}, floor {floor}, ratio {ratio:.3f} (target <= 1.10), "
        f"{elapsed:.1f}s, {bars / elapsed:,.0f} rows/s end to end"
    )
    write_results(
        "requests_floor" if args.vendor == "demo" else f"requests_floor_{args.vendor}",
        {
            "vendor": args.vendor,
            "symbols": args.symbols,
            "months": args.months,
            "bars": bars,
            "requests": len(served),
            "other_requests": len(other),
            "floor": floor,
            "ratio": ratio,
            "seconds": elapsed,
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
