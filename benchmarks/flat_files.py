"""Bulk backfill: a month of a 500-symbol universe from Polygon's flat files vs from REST.

Both runs are the whole workflow (`snakemake --cores 2`, vendor polygon) against the same
simulator process; the flat-file run reads each day's gzipped CSV of the whole market from
moto's S3 server on loopback (the simulator's own truth, written there first: the universe
plus as many tickers again that it does not ask for). Reported: wall time, rows/s, bar
requests (aggregates pages) against file reads, and whether the two lakes reconcile.

    python benchmarks/flat_files.py                       # 500 symbols x January 2024
    python benchmarks/flat_files.py --symbols 5 --days 3  # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import run_workflow, write_results
from fixture_lake import symbols

from marketpipe.lake.compare import reconcile_lakes
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.simulator import SimulatorConfig
from marketpipe.simulator.api import SimulatorApp
from marketpipe.simulator.flat_files import publish_flat_files
from marketpipe.simulator.process import simulator_subprocess
from tests.s3_server import AWS_ENVIRONMENT, s3_server

PREFIX = "us_stocks_sip/minute_aggs_v1"
FIRST = dt.date(2024, 1, 2)
AGGREGATES = "/v2/aggs/ticker/"


def main() -> int:
    """Publish the files, run both backfills, compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--days", type=int, default=21, help="sessions from 2024-01-02")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    universe = symbols(args.symbols)
    others = [f"X{index:03d}" for index in range(args.symbols)]  # in the files, not asked for
    days = [session.date for session in trading_sessions(FIRST, FIRST + dt.timedelta(days=40))]
    days = days[: args.days]
    results: dict[str, object] = {"symbols": args.symbols, "days": len(days)}
    with s3_server() as s3, tempfile.TemporaryDirectory(prefix="marketpipe-flat-") as scratch:
        bucket = s3.create_bucket()
        client = s3.client()
        # The same market as the simulator process below (seed 0, its default).
        market = SimulatorApp(SimulatorConfig(seed=0, rate_limit_per_minute=0)).polygon
        began = time.perf_counter()
        now = dt.datetime.now(dt.UTC)
        publish_flat_files(client, bucket, PREFIX, market, days, [*universe, *others], now)
        results["publish_s"] = round(time.perf_counter() - began, 1)
        results["file_bytes"] = sum(
            item["Size"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]
        )
        log = Path(scratch) / "requests.jsonl"
        env = {
            **os.environ,
            "POLYGON_API_KEY": "benchmark",
            "POLYGON_S3_ACCESS_KEY_ID": AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
            "POLYGON_S3_SECRET_ACCESS_KEY": AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        }
        with simulator_subprocess("--log-file", str(log), "--rate-limit", "0") as url:
            for mode in ("flat_files", "rest"):
                workdir = Path(scratch) / mode
                workdir.mkdir()
                polygon: dict[str, object] = {"base_url": url, "requests_per_minute": 100_000}
                if mode == "flat_files":
                    polygon |= {
                        "flat_files": True,
                        "flat_files_endpoint": s3.url,
                        "flat_files_bucket": bucket,
                    }
                config = {
                    "symbols": universe,
                    "start": days[0],
                    "end": days[-1],
                    "data_dir": "lake",
                    "vendor": "polygon",
                    "polygon": polygon,
                }
                seen, reads = len(_served(log)), _file_reads(s3, bucket)
                elapsed, _ = run_workflow(workdir, config, env=env, request_log=log)
                served = _served(log)[seen:]
                with CheckpointStore(workdir / "lake") as store:
                    rows = sum(entry.rows for entry in store.all_entries())
                results[mode] = {
                    "seconds": round(elapsed, 2),
                    "rows": rows,
                    "rows_per_second": round(rows / elapsed),
                    "bar_requests": sum(1 for e in served if e.path.startswith(AGGREGATES)),
                    "reference_requests": sum(
                        1 for e in served if not e.path.startswith(AGGREGATES)
                    ),
                    "file_reads": _file_reads(s3, bucket) - reads,
                }
                print(f"{mode}: {results[mode]}", flush=True)
        compared = reconcile_lakes(
            Path(scratch) / "flat_files" / "lake", Path(scratch) / "rest" / "lake"
        )
        results["lakes_agree"] = compared.agree
    flat, rest = results["flat_files"], results["rest"]
    assert isinstance(flat, dict) and isinstance(rest, dict)
    results["speedup"] = rest["seconds"] / flat["seconds"]
    print(
        f"{args.symbols} symbols x {len(days)} sessions: flat files {flat['seconds']:.1f}s "
        f"({flat['file_reads']} file reads, {flat['bar_requests']} aggregates requests) vs REST "
        f"{rest['seconds']:.1f}s ({rest['bar_requests']} aggregates requests): "
        f"{results['speedup']:.2f}x; lakes agree: {results['lakes_agree']}"
    )
    write_results("flat_files", results, args.output)
    return 0 if results["lakes_agree"] else 1


def _served(log: Path) -> list:
    from marketpipe.simulator import read_request_log

    return read_request_log(log) if log.exists() else []


def _file_reads(s3: object, bucket: str) -> int:
    """Object reads of ``bucket`` the S3 server answered."""
    return sum(
        1
        for request in s3.requests  # type: ignore[attr-defined]
        if request.method == "GET" and request.path.startswith(f"/{bucket}/")
    )


if __name__ == "__main__":
    raise SystemExit(main())
