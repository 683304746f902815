"""A daily incremental update: N symbols with a month of history get one new trading day.

Target (README): 100 symbols -> exactly 100 requests, and at most 15 s of overhead beyond the
requests themselves. History is written by the fixture writer; the new day is fetched for real
from the bundled simulator.

    python benchmarks/incremental.py
    python benchmarks/incremental.py --symbols 5      # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_workflow, write_results
from fixture_lake import symbols, write_fixture_lake

HISTORY = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))
NEW_DAY = dt.date(2024, 2, 1)


def main() -> int:
    """Write the history, fetch the new day, and report requests and overhead."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    tickers = symbols(args.symbols)
    with tempfile.TemporaryDirectory(prefix="marketpipe-incremental-") as scratch:
        workdir = Path(scratch)
        write_fixture_lake(workdir / "lake", tickers, *HISTORY)
        config = {"symbols": tickers, "start": HISTORY[0], "end": NEW_DAY, "data_dir": "lake",
                  "alpaca": {"requests_per_minute": 100_000}}  # fmt: skip
        elapsed, served = run_workflow(workdir, config)
    in_requests = sum(entry.duration_ms for entry in served) / 1000
    overhead = elapsed - in_requests
    print(f"{args.symbols} symbols, one new day: {len(served)} requests "
          f"(target {args.symbols}); {elapsed:.1f}s in all, {in_requests:.1f}s serving "
          f"requests, {overhead:.1f}s overhead (target <= 15s)")  # fmt: skip
    path = write_results(
        "incremental",
        {"symbols": args.symbols, "requests": len(served), "seconds": elapsed,
         "request_seconds": in_requests, "overhead_seconds": overhead},
        args.output,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0 if len(served) == args.symbols else 1


if __name__ == "__main__":
    raise SystemExit(main())
