"""Peak memory of streaming one symbol's 1-minute bars through ``fetch_batch()``.

Each measurement runs in a fresh interpreter (so peak RSS is its own) against a
simulator in a separate process; 1-month and 12-month runs alternate and the median
of each is reported, with the 12-month / 1-month ratio.

    python benchmarks/fetch_memory.py                  # 1 vs 12 months, 3 repeats
    python benchmarks/fetch_memory.py --months 1 2 --repeats 1   # quick smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, run_child, write_results

from marketpipe.simulator.process import simulator_subprocess

START = dt.date(2024, 1, 1)


def measure(url: str, symbol: str, months: int) -> dict[str, float]:
    """Fetch ``months`` months of 1Min sip bars and report rows, pages, time and peak RSS."""
    from pydantic import SecretStr

    from marketpipe.connectors import AlpacaClient, AlpacaConfig, BarsQuery
    from marketpipe.markettime.calendar import NEW_YORK

    end_month = START.month - 1 + months
    end = dt.date(START.year + end_month // 12, end_month % 12 + 1, 1)
    query = BarsQuery(
        symbols=(symbol,),
        start=dt.datetime.combine(START, dt.time(), NEW_YORK),
        end=dt.datetime.combine(end, dt.time(), NEW_YORK) - dt.timedelta(minutes=1),
    )
    config = AlpacaConfig(
        base_url=url,
        key_id=SecretStr("demo"),
        secret_key=SecretStr("demo"),
        requests_per_minute=100_000,
    )
    rows = pages = 0
    started = time.perf_counter()
    with AlpacaClient(config) as client:
        for table in client.fetch_batch(query):
            rows += table.num_rows
            pages += 1
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "months": months,
        "rows": rows,
        "pages": pages,
        "seconds": round(elapsed, 3),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def main() -> int:
    """Run the comparison (or, with ``--child``, one measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, nargs="+", default=[1, 12])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.url, args.symbol, args.months[0])))
        return 0
    runs: dict[int, list[dict[str, float]]] = {months: [] for months in args.months}
    with simulator_subprocess("--rate-limit", "0") as url:
        for _ in range(args.repeats):
            for months in args.months:
                child_args = ["--child", "--url", url, "--symbol", args.symbol]
                runs[months].append(
                    run_child(Path(__file__), [*child_args, "--months", str(months)])
                )
    summary = {
        months: {
            "rows": results[0]["rows"],
            "pages": results[0]["pages"],
            "median_seconds": median([r["seconds"] for r in results]),
            "median_peak_rss_mb": median([r["peak_rss_mb"] for r in results]),
        }
        for months, results in runs.items()
    }
    smallest, largest = min(args.months), max(args.months)
    ratio = summary[largest]["median_peak_rss_mb"] / summary[smallest]["median_peak_rss_mb"]
    print(f"fetch_batch() peak RSS, {args.symbol} 1Min sip, {args.repeats} alternating repeats")
    print(f"{'months':>6} {'rows':>9} {'pages':>6} {'seconds':>8} {'peak RSS MB':>12}")
    for months, row in summary.items():
        print(
            f"{months:>6} {row['rows']:>9,} {row['pages']:>6} {row['median_seconds']:>8.2f} "
            f"{row['median_peak_rss_mb']:>12.1f}"
        )
    print(f"ratio {largest} / {smallest} months: {ratio:.3f}")
    write_results(
        "fetch_memory",
        {"symbol": args.symbol, "runs": runs, "summary": summary, "rss_ratio": ratio},
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
