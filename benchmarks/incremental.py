"""A daily incremental update: N symbols with a month of history get one new trading day.

Target (docs): 100 symbols -> bar requests at most 1.1 x the floor ceil(bars / 10000), and
at most 15 s of overhead beyond the requests themselves. Measured twice: with the default
packing (symbols missing the same day share pages) and with ``symbols_per_job: 1`` (one
request per symbol). The run's other requests are counted by endpoint: corporate actions
(the daily check) and news (the new day's, and the daily recheck). History (bars, and news files
for every day of it, in the ledger and in month files as a lake updated every day holds it) is
written by the fixture writer; the new day is fetched for real from the bundled simulator.

    python benchmarks/incremental.py
    python benchmarks/incremental.py --symbols 5      # smoke run
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
from fixture_lake import symbols, write_fixture_lake

from marketpipe.markettime.clock import NOW_VARIABLE

ENDPOINTS = {
    "/v1/corporate-actions": "corporate_actions",
    "/v1beta1/news": "news",
    "/v2/stocks/bars/latest": "latest_bars",
}
HISTORY = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))
NEW_DAY = dt.date(2024, 2, 1)
# The run's clock: the morning after the new session, when a daily update runs (its news
# recheck then reaches the new day, not a week past it).
NOW = "2024-02-02T12:00:00Z"


def write_news_history(data_dir: Path, tickers: list[str], first: dt.date, last: dt.date) -> None:
    """A news file for every calendar day of the history, complete for ``tickers`` (empty:
    the update's news work is then the new day's and the daily recheck, as in a lake that
    has been updated every day)."""
    from marketpipe.connectors import NEWS_SCHEMA
    from marketpipe.lake.news import news_file, news_path

    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        _, data = news_file(day, NEWS_SCHEMA.empty_table(), tickers)
        path = news_path(data_dir, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def measure(tickers: list[str], symbols_per_job: int | None) -> dict[str, float]:
    """Fetch the new day on top of a fixture history; requests, bars and seconds."""
    with tempfile.TemporaryDirectory(prefix="marketpipe-incremental-") as scratch:
        workdir = Path(scratch)
        write_fixture_lake(workdir / "lake", tickers, *HISTORY, settled=True)
        write_news_history(workdir / "lake", tickers, *HISTORY)
        config = {
            "symbols": tickers,
            "start": HISTORY[0],
            "end": NEW_DAY,
            "data_dir": "lake",
            "alpaca": {"requests_per_minute": 100_000},
        }
        if symbols_per_job is not None:
            config["symbols_per_job"] = symbols_per_job
        elapsed, served = run_workflow(workdir, config, env={**os.environ, NOW_VARIABLE: NOW})
    in_requests = sum(entry.duration_ms for entry in served) / 1000
    bar_requests = [entry for entry in served if entry.path.endswith("/bars")]
    bars = sum(entry.bars for entry in bar_requests)
    by_endpoint = {name: 0 for name in ENDPOINTS.values()}
    for entry in served:
        name = ENDPOINTS.get(entry.path, "other")
        by_endpoint[name] = by_endpoint.get(name, 0) + 1
    return {
        "requests": len(bar_requests),
        "floor": math.ceil(bars / 10_000),
        "corporate_actions_requests": by_endpoint["corporate_actions"],
        "news_requests": by_endpoint["news"],
        "other_requests": by_endpoint.get("other", 0) + by_endpoint["latest_bars"],
        "seconds": elapsed,
        "request_seconds": in_requests,
        "overhead_seconds": elapsed - in_requests,
    }


def main() -> int:
    """Write the history, fetch the new day, and report requests and overhead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    tickers = symbols(args.symbols)
    results = {"packed": measure(tickers, None), "one_per_symbol": measure(tickers, 1)}
    print(f"{args.symbols} symbols, one new day (overhead target <= 15s):")
    for mode, result in results.items():
        print(
            f"  {mode:>14}: {result['requests']} bar requests (floor {result['floor']}), "
            f"{result['corporate_actions_requests']} corporate-actions and "
            f"{result['news_requests']} news request(s); "
            f"{result['seconds']:.1f}s in all, {result['request_seconds']:.1f}s serving "
            f"requests, {result['overhead_seconds']:.1f}s overhead"
        )
    write_results("incremental", {"symbols": args.symbols, **results}, args.output)
    packed, single = results["packed"], results["one_per_symbol"]
    return 0 if single["requests"] == args.symbols and packed["requests"] <= args.symbols else 1


if __name__ == "__main__":
    raise SystemExit(main())
