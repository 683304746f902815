"""Planning an S3 lake: `snakemake -n` and `marketpipe plan` over N symbols x Y years of
partitions on a local S3 server (moto's, on loopback), with the requests counted at the server.

    python benchmarks/s3_planning.py                          # 100 symbols x 5 years = 125,800
    python benchmarks/s3_planning.py --symbols 3 --years 1    # smoke run

The objects are placed in the server's store directly (their content does not matter to
planning); one partition per symbol is left out so the plan has work to name.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import lake_size_parser, workflow_command, write_results

from marketpipe.lake.identity import IDENTITY_KEY
from marketpipe.lake.storage import partition_key
from marketpipe.markettime.calendar import trading_sessions
from tests.s3_server import s3_server


def main() -> int:
    """Fill a bucket, then time and count the requests of `snakemake -n` and `marketpipe plan`."""
    parser = lake_size_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    symbols = [f"S{index:03d}" for index in range(args.symbols)]
    first, last = dt.date(2019, 1, 2), dt.date(2018 + args.years, 12, 31)
    days = [session.date for session in trading_sessions(first, last)]
    results: dict[str, object] = {"symbols": args.symbols, "years": args.years}
    with s3_server() as server, tempfile.TemporaryDirectory(prefix="marketpipe-s3-") as scratch:
        bucket = server.create_bucket()
        keys = [
            f"lake/{partition_key(symbol, day)}"
            for index, symbol in enumerate(symbols)
            for position, day in enumerate(days)
            if position != index % len(days)  # one missing partition per symbol
        ]
        started = time.perf_counter()
        server.put_directly(bucket, keys, b"PAR1")
        identity = {"vendor": "demo", "feed": "sip", "timeframe": "1Min", "adjustment": "raw"}
        server.put_directly(bucket, [f"lake/{IDENTITY_KEY}"], json.dumps(identity).encode())
        results["partitions"] = len(keys)
        results["fill_seconds"] = round(time.perf_counter() - started, 2)
        workdir = Path(scratch)
        config = {
            "symbols": symbols,
            "start": first.isoformat(),
            "end": last.isoformat(),
            "data_dir": f"s3://{bucket}/lake",
            "corporate_actions": {"fetch": False},
        }
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, **server.environment}
        cases = {
            "snakemake -n": workflow_command("--configfile", "config.yaml", "-n"),
            "marketpipe plan": [
                sys.executable,
                "-m",
                "marketpipe.cli",
                "plan",
                "--config",
                "config.yaml",
            ],
        }
        for name, command in cases.items():
            before = len(server.requests)
            started = time.perf_counter()
            result = subprocess.run(
                command, cwd=workdir, env=env, capture_output=True, text=True, check=False
            )
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
            requests = len(server.requests) - before
            results[name] = {"seconds": round(elapsed, 2), "requests": requests}
    floor = math.ceil(len(keys) / 1000)
    print(
        f"{args.symbols} symbols x {args.years} year(s): {len(keys):,} objects on S3 "
        f"(filled in {results['fill_seconds']} s); one LIST per 1,000 keys = {floor}"
    )
    for name in cases:
        case = results[name]
        assert isinstance(case, dict)
        print(f"  {name:<16} {case['seconds']:>6.2f} s  {case['requests']:>5} request(s)")
    results["list_floor"] = floor
    write_results("s3_planning", results, args.output)
    # Beyond the bars' pages: one listing each of the news days and of the month files, and
    # one GET of the lake's identity.
    extra = 3
    within = all(results[name]["requests"] <= floor + extra for name in cases)  # type: ignore[index]
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
