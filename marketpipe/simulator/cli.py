"""Command line for the simulator: ``python -m marketpipe.simulator --port N``."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from marketpipe.simulator.actions import load_corporate_actions
from marketpipe.simulator.api import SimulatorConfig
from marketpipe.simulator.faults import FAULT_KINDS, FaultConfig, parse_assignments
from marketpipe.simulator.market import BAD_BAR_KINDS, DEFAULT_OUTSIDE_RANGE_RATE
from marketpipe.simulator.securities import SecurityBook
from marketpipe.simulator.server import SimulatorServer


def build_parser() -> argparse.ArgumentParser:
    """The simulator's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m marketpipe.simulator",
        description="Serve Alpaca-compatible market data bars on loopback, offline. The "
        "market's clock is the real one, or MARKETPIPE_NOW (an RFC-3339 instant) when set.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port; 0 lets the OS choose")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic market")
    parser.add_argument("--key-id", help="accept only this key id (default: any non-empty)")
    parser.add_argument("--secret-key", help="accept only this secret key")
    parser.add_argument(
        "--rate-limit", type=int, default=200, help="requests per minute per key; 0 = unlimited"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault into a share of requests; KIND is one of {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--rate-window", type=float, default=60.0, help="rate-limit window in seconds"
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds sent")
    parser.add_argument("--slow-seconds", type=float, default=0.05, help="delay of 'slow'")
    parser.add_argument("--timeout-seconds", type=float, default=10.0, help="stall of 'timeout'")
    parser.add_argument(
        "--fail-symbol",
        action="append",
        default=[],
        metavar="SYMBOL=STATUS",
        help="answer every request for SYMBOL with this HTTP status",
    )
    parser.add_argument(
        "--bad-bars",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"corrupt a share of bars; KIND is one of {', '.join(BAD_BAR_KINDS)}",
    )
    parser.add_argument(
        "--listing",
        action="append",
        default=[],
        metavar="SYMBOL=YYYY-MM-DD",
        help="SYMBOL has no bars before this New York date (a new listing)",
    )
    parser.add_argument(
        "--unknown-symbol",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="a ticker the vendor does not know: no bars, no latest bar",
    )
    parser.add_argument(
        "--correction",
        action="append",
        default=[],
        metavar="SYMBOL=YYYY-MM-DD",
        help="serve SYMBOL's bars of that day as the vendor corrected them (a late cancel)",
    )
    parser.add_argument(
        "--plan",
        choices=["paid", "free"],
        default="paid",
        help="the keys' subscription: free refuses SIP data of the last 15 minutes (HTTP 403)",
    )
    parser.add_argument(
        "--outside-range-rate",
        type=float,
        default=DEFAULT_OUTSIDE_RANGE_RATE,
        help="share of bars with open or close outside [low, high], as real data has",
    )
    parser.add_argument(
        "--fractional-timestamps", action="store_true", help="write t with nanoseconds"
    )
    parser.add_argument(
        "--corporate-actions",
        type=Path,
        metavar="FILE",
        help="serve (and apply to the bars) these corporate actions instead of the demo "
        "market's: a JSON object in Alpaca's shape, {\"forward_splits\": [{...}], ...}",
    )
    parser.add_argument(
        "--securities",
        type=Path,
        metavar="FILE",
        help="securities with a ticker history (renames, delistings, reused tickers): a YAML "
        "list of {name, tickers: {FB: 2012-05-18, META: 2022-06-09}, delisted, figi}",
    )
    parser.add_argument("--log-file", type=Path, help="append every request as a JSON line")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Turn parsed arguments into a :class:`SimulatorConfig`."""
    faults = FaultConfig(
        seed=args.fault_seed,
        rates=dict(parse_assignments(args.fault, float, "--fault")),
        retry_after_seconds=args.retry_after,
        slow_seconds=args.slow_seconds,
        timeout_seconds=args.timeout_seconds,
        fail_symbols=dict(parse_assignments(args.fail_symbol, int, "--fail-symbol")),
    )
    return SimulatorConfig(
        seed=args.seed,
        key_id=args.key_id,
        secret_key=args.secret_key,
        rate_limit_per_minute=args.rate_limit,
        rate_limit_window_seconds=args.rate_window,
        faults=faults,
        bad_bars=dict(parse_assignments(args.bad_bars, float, "--bad-bars")),
        listings=dict(parse_assignments(args.listing, dt.date.fromisoformat, "--listing")),
        unknown_symbols=frozenset(args.unknown_symbol),
        outside_range_rate=args.outside_range_rate,
        corrections=frozenset(
            item
            for pair in args.correction  # one at a time: a symbol may have several days
            for item in parse_assignments([pair], dt.date.fromisoformat, "--correction").items()
        ),
        plan=args.plan,
        fractional_timestamps=args.fractional_timestamps,
        securities=() if args.securities is None else load_securities(args.securities),
        **(
            {}
            if args.corporate_actions is None
            else {"corporate_actions": load_corporate_actions(args.corporate_actions)}
        ),
    )


def load_securities(path: Path) -> tuple[dict[str, Any], ...]:
    """Security records from a YAML (or JSON) list, checked as the simulator will use them."""
    try:
        records = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(item, dict) for item in records):
        raise ValueError(f"{path}: expected a list of {{name, tickers, ...}} records")
    SecurityBook.from_records(records)
    return tuple(records)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM; print the URL on the first line of stdout."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        server = SimulatorServer(
            config_from_args(args), host=args.host, port=args.port, log_path=args.log_file
        )
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with server:
        print(f"MarketPipe simulator listening on {server.url}", flush=True)
        stop.wait()
    print("MarketPipe simulator stopped", file=sys.stderr, flush=True)
    return 0
