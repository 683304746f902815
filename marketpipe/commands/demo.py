"""``marketpipe demo``: fetch bars from an embedded simulator, offline, and say what arrived."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import Counter

from pydantic import SecretStr, ValidationError

from marketpipe.connectors import AlpacaClient, AlpacaConfig, BarsQuery, ConnectorError
from marketpipe.markettime.calendar import new_york_days_range
from marketpipe.simulator import SimulatorConfig, SimulatorServer


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    """Register ``demo`` with the ``marketpipe`` parser."""
    summary = "fetch bars from the bundled simulator, offline (no keys, no network)"
    demo = commands.add_parser(
        "demo",
        help=summary,
        description=summary + ": a synthetic market served on loopback, fetched with the "
        "real client into a directory of your choice",
    )
    demo.add_argument("--symbols", default="AAPL,MSFT,SPY", help="comma-separated tickers")
    demo.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=dt.date(2024, 1, 2),
        help="first New York date (default 2024-01-02)",
    )
    demo.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.date(2024, 2, 29),
        help="last New York date (default 2024-02-29)",
    )
    demo.add_argument("--timeframe", default="1Min", help="bar width: 1Min, 5Min, 1Hour, 1Day")
    demo.add_argument("--feed", default="sip", choices=["sip", "iex"], help="simulated feed")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic market")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Fetch bars from an embedded simulator and print what arrived."""
    start, end = new_york_days_range(args.start, args.end)
    try:
        query = BarsQuery(
            symbols=tuple(symbol.strip().upper() for symbol in args.symbols.split(",")),
            timeframe=args.timeframe,
            start=start,
            end=end,
            feed=args.feed,
        )
    except ValidationError as exc:
        print(f"marketpipe demo: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows: Counter[str] = Counter()
    with SimulatorServer(SimulatorConfig(seed=args.seed, rate_limit_per_minute=0)) as server:
        config = AlpacaConfig(
            base_url=server.url, key_id=SecretStr("demo"), secret_key=SecretStr("demo")
        )
        with AlpacaClient(config) as client:
            try:
                for table in client.fetch_batch(query):
                    for symbol, count in Counter(table.column("symbol").to_pylist()).items():
                        rows[symbol] += count
            except ConnectorError as exc:
                print(f"marketpipe demo: {exc}", file=sys.stderr)
                return 1
        requests = len(server.request_log.entries)
    elapsed = time.perf_counter() - started
    print(f"Fetched {args.timeframe} {args.feed} bars {args.start} .. {args.end} (simulator)")
    for symbol in query.symbols:
        print(f"  {symbol:<8} {rows[symbol]:>9,} bars")
    total = sum(rows.values())
    print(f"  {'total':<8} {total:>9,} bars in {requests} request(s), {elapsed:.2f}s")
    return 0
