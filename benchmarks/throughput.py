"""End-to-end rows/s: MarketPipe's workflow vs what a user writes with alpaca-py today, and
vs a floor client that only sends MarketPipe's requests.

Every side fetches the same symbols and days from one simulator process (no rate limit);
runs alternate, and the median of each side is reported. The simulator is warmed up first
(every session generated and encoded once), so no side measures the synthetic market's
generation, which stands in for the vendor's servers. The alpaca-py side is the common
script: `get_stock_bars` per symbol and day, `.df`, `to_parquet`. The floor sends exactly the
bar requests MarketPipe's run of the same round sent, one after another, and only
decompresses and `json.loads` each page: on these 2 cores the server's JSON generation
bounds every client, and the floor shows how much of the time MarketPipe itself adds.
``--latency-ms`` has the server hold every answer that long (a round trip to a far API).

    python benchmarks/throughput.py              # 20 symbols x 3 months (~1M rows), 2 rounds
    python benchmarks/throughput.py --latency-ms 50      # the same, 50 ms per request
    python benchmarks/throughput.py --symbols 1 --months 1 --rounds 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, workflow_command, write_results
from fixture_lake import symbols

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import partition_path
from marketpipe.markettime.calendar import NEW_YORK, new_york_days_range, trading_sessions
from marketpipe.simulator import read_request_log
from marketpipe.simulator.process import simulator_subprocess

START = dt.date(2024, 1, 2)
MONTH_ENDS = [dt.date(2024, 1, 31), dt.date(2024, 2, 29), dt.date(2024, 3, 28)]


def alpaca_py_backfill(url: str, tickers: list[str], end: dt.date, lake: Path) -> int:
    """The baseline: one get_stock_bars call per symbol and day, then .df and to_parquet."""
    from alpaca.data.enums import DataFeed
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockBarsRequest
    from alpaca.data.timeframe import TimeFrame

    client = StockHistoricalDataClient("demo", "demo", url_override=url)
    rows = 0
    for ticker in tickers:
        for session in trading_sessions(START, end):
            day_start = dt.datetime.combine(session.date, dt.time(0, 0), NEW_YORK)
            request = StockBarsRequest(
                symbol_or_symbols=ticker,
                timeframe=TimeFrame.Minute,
                feed=DataFeed.SIP,
                start=day_start,
                end=day_start + dt.timedelta(days=1, seconds=-1),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = client.get_stock_bars(request).df
            path = partition_path(lake, ticker, session.date)
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path)
            rows += len(frame)
    return rows


def marketpipe_backfill(url: str, tickers: list[str], end: dt.date, workdir: Path) -> int:
    """MarketPipe: the workflow, vendor alpaca, pointed at the same simulator, bars only (no
    corporate actions or news: the baseline fetches neither); the rows its ledger records."""
    config = {
        "symbols": tickers,
        "start": START,
        "end": end,
        "data_dir": "lake",
        "vendor": "alpaca",
        "alpaca": {"base_url": url, "requests_per_minute": 100_000},
        "corporate_actions": {"fetch": False},
        "news": {"fetch": False},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    environment = {**os.environ, "APCA_API_KEY_ID": "demo", "APCA_API_SECRET_KEY": "demo"}
    command = workflow_command("--configfile", "config.yaml", "--cores", "2")
    subprocess.run(command, cwd=workdir, env=environment, check=True, capture_output=True)
    with CheckpointStore(workdir / "lake") as store:
        return sum(entry.rows for entry in store.all_entries())


def floor_client(url: str, requests_sent: list[Any]) -> int:
    """Send each of ``requests_sent`` (MarketPipe's, from the server's log) in order; only
    decompress and parse each page. Returns the bars received."""
    import requests

    bars = 0
    headers = {"APCA-API-KEY-ID": "demo", "APCA-API-SECRET-KEY": "demo"}
    with requests.Session() as session:
        for sent in requests_sent:
            answer = session.get(url + sent.path, params=sent.params, headers=headers)
            answer.raise_for_status()
            page = json.loads(answer.content)
            bars += sum(len(rows) for rows in (page.get("bars") or {}).values())
    return bars


def warm_up(url: str, tickers: list[str], end: dt.date) -> None:
    """Have the simulator generate and cache every session both sides will ask for."""
    from pydantic import SecretStr

    from marketpipe.connectors import AlpacaClient, AlpacaConfig, BarsQuery

    start, stop = new_york_days_range(START, end)
    config = AlpacaConfig(
        base_url=url,
        key_id=SecretStr("demo"),
        secret_key=SecretStr("demo"),
        requests_per_minute=100_000,
    )
    query = BarsQuery(symbols=tuple(tickers), timeframe="1Min", start=start, end=stop, feed="sip")
    with AlpacaClient(config) as client:
        for _ in client.fetch_batch(query):
            pass


def main() -> int:
    """Alternate the sides and print the medians and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--months", type=int, default=3, choices=range(1, 4))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    tickers = symbols(args.symbols)
    end = MONTH_ENDS[args.months - 1]
    rows: dict[str, int] = {}
    sides = ("marketpipe", "floor", "alpaca-py")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    requests_made: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        server = ["--rate-limit", "0", "--log-file", str(log)]
        if args.latency_ms:
            server += ["--fault", "slow=1", "--slow-seconds", str(args.latency_ms / 1000)]
        with simulator_subprocess(*server) as url:
            warm_up(url, tickers, end)
            for round_number in range(args.rounds):
                ours: list[Any] = []
                for side in sides:
                    workdir = Path(tmp) / f"{side}-{round_number}"
                    workdir.mkdir()
                    seen = len(read_request_log(log))
                    started = time.perf_counter()
                    if side == "marketpipe":
                        rows[side] = marketpipe_backfill(url, tickers, end, workdir)
                    elif side == "floor":
                        rows[side] = floor_client(url, ours)
                    else:
                        lake = workdir / "lake" / "ohlcv"
                        rows[side] = alpaca_py_backfill(url, tickers, end, lake)
                    seconds[side].append(time.perf_counter() - started)
                    sent = [e for e in read_request_log(log)[seen:] if e.path.endswith("/bars")]
                    requests_made[side] = len(sent)
                    if side == "marketpipe":
                        ours = sent
    medians = {side: median(values) for side, values in seconds.items()}
    print(f"{args.symbols} symbols x {START}..{end}, {args.latency_ms:g} ms added: rows {rows}")
    print(f"{'side':<12} {'median s':>9} {'rows/s':>10} {'requests':>9}")
    for side in sides:
        # Each side's rate from the rows that side itself wrote (or received).
        rate = rows[side] / medians[side]
        print(f"{side:<12} {medians[side]:>9.2f} {rate:>10,.0f} {requests_made[side]:>9}")
    speedup = medians["alpaca-py"] / medians["marketpipe"]
    over_floor = medians["marketpipe"] / medians["floor"]
    print(f"marketpipe: {speedup:.2f}x alpaca-py's speed, {over_floor:.2f}x the floor's time")
    write_results(
        "throughput" + (f"_latency_{args.latency_ms:g}ms" if args.latency_ms else ""),
        {
            "symbols": args.symbols,
            "months": args.months,
            "latency_ms": args.latency_ms,
            "rows": rows,
            "seconds": seconds,
            "requests": requests_made,
            "rows_per_second": {side: rows[side] / medians[side] for side in sides},
            "speedup": speedup,
            "over_floor": over_floor,
        },
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
