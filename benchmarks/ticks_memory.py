"""One day of a liquid symbol's quotes (over 5 million) into the lake, at flat memory:
MarketPipe's streamed day file against alpaca-py's ``get_stock_quotes``, on the same
simulator (its own process), each in a fresh interpreter.

Target (issue #36): MarketPipe's peak RSS <= 400 MB; alpaca-py's peak RSS and time beside it.

    python benchmarks/ticks_memory.py
    python benchmarks/ticks_memory.py --symbol AAPL --minutes 30   # smoke run: a window
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_child, write_results

from marketpipe.simulator.process import simulator_subprocess

DAY = dt.date(2024, 3, 5)
TARGET_MB = 400


def _window(minutes: int | None) -> tuple[dt.datetime, dt.datetime]:
    from marketpipe.markettime.calendar import new_york_midnight

    start = new_york_midnight(DAY)
    if minutes is None:
        return start, new_york_midnight(DAY + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)
    opening = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)
    return opening, opening + dt.timedelta(minutes=minutes) - dt.timedelta(microseconds=1)


def measure_marketpipe(url: str, symbol: str, minutes: int | None) -> dict[str, float]:
    """Stream the quotes into a day file; rows, seconds, peak RSS."""
    from pydantic import SecretStr

    from marketpipe.connectors import AlpacaConfig
    from marketpipe.connectors.ticks import AlpacaQuotesClient, TicksQuery
    from marketpipe.lake.ticks import write_tick_day

    config = AlpacaConfig(
        base_url=url,
        key_id=SecretStr("demo"),
        secret_key=SecretStr("demo"),
        requests_per_minute=100_000,
    )
    start, end = _window(minutes)
    query = TicksQuery(symbols=(symbol,), start=start, end=end)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as lake, AlpacaQuotesClient(config) as client:
        written = write_tick_day(lake, "quotes", symbol, DAY, client.fetch_batch(query))
    return _result(written.rows, began)


def measure_alpaca_py(url: str, symbol: str, minutes: int | None) -> dict[str, float]:
    """alpaca-py's ``get_stock_quotes`` for the same window (it holds the whole answer)."""
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockQuotesRequest

    client = StockHistoricalDataClient("demo", "demo", url_override=url)
    start, end = _window(minutes)
    began = time.perf_counter()
    quotes = client.get_stock_quotes(
        StockQuotesRequest(symbol_or_symbols=symbol, start=start, end=end)
    )
    return _result(len(quotes.data.get(symbol, [])), began)


def _result(rows: int, began: float) -> dict[str, float]:
    elapsed = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows,
        "seconds": round(elapsed, 2),
        "rows_per_second": round(rows / elapsed),
        "peak_rss_mb": round(peak_mb, 1),
    }


def main() -> int:
    """Run both clients (or, with ``--child``, one of them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="NVDA")
    parser.add_argument("--minutes", type=int, help="a window from the open instead of the day")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", choices=["marketpipe", "alpaca-py"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure = measure_marketpipe if args.child == "marketpipe" else measure_alpaca_py
        print(json.dumps(measure(args.url, args.symbol, args.minutes)))
        return 0
    window = [] if args.minutes is None else ["--minutes", str(args.minutes)]
    results = {}
    with simulator_subprocess("--rate-limit", "0") as url:
        for client in ("marketpipe", "alpaca-py"):
            child = ["--child", client, "--url", url, "--symbol", args.symbol, *window]
            results[client] = run_child(Path(__file__), child)
    print(f"{args.symbol} quotes of {DAY}" + (f", {args.minutes} minutes" if args.minutes else ""))
    for client, row in results.items():
        print(
            f"  {client:>10}: {row['rows']:,} quotes in {row['seconds']:.1f} s "
            f"({row['rows_per_second']:,}/s), peak RSS {row['peak_rss_mb']:.0f} MB"
        )
    met = results["marketpipe"]["peak_rss_mb"] <= TARGET_MB
    print(f"target: MarketPipe's peak RSS <= {TARGET_MB} MB: {'met' if met else 'missed'}")
    write_results(
        "ticks_memory",
        {"symbol": args.symbol, "day": DAY.isoformat(), "minutes": args.minutes, **results},
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
