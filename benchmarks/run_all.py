"""Run every benchmark with its full-size defaults, one after another (about 30 minutes here),
then write ``benchmarks/measured.json`` (every result, the commit measured, when, where) and
regenerate docs/benchmarks.md's table from it (``benchmarks/table.py``).

python benchmarks/run_all.py          # results in benchmarks/results/*.json + measured.json
python benchmarks/run_all.py --smoke  # tiny sizes: checks the scripts work, not timings
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from table import MEASURED, rewrite_page

HERE = Path(__file__).resolve().parent
# (script, arguments, results file name): the full-size runs, then tiny ones for CI.
FULL = [
    ("requests_floor.py", [], "requests_floor"),
    ("requests_floor.py", ["--vendor", "polygon"], "requests_floor_polygon"),
    ("throughput.py", [], "throughput"),
    ("fetch_memory.py", [], "fetch_memory"),
    ("workflow_memory.py", [], "workflow_memory"),
    ("planning.py", [], "planning"),
    ("incremental.py", [], "incremental"),
    ("reading.py", [], "reading"),
    ("s3_planning.py", [], "s3_planning"),
    ("reconcile.py", [], "reconcile"),
    ("throughput.py", ["--latency-ms", "50"], "throughput_latency_50ms"),
    ("incremental.py", ["--symbols", "500"], "incremental_500"),
    ("flat_files.py", [], "flat_files"),
    ("scale.py", [], "scale"),
    ("ticks_memory.py", [], "ticks_memory"),
]
SMOKE = [
    ("requests_floor.py", ["--symbols", "2", "--months", "1"], "requests_floor"),
    (
        "requests_floor.py",
        ["--vendor", "polygon", "--symbols", "2", "--months", "1"],
        "requests_floor_polygon",
    ),
    ("throughput.py", ["--symbols", "1", "--months", "1", "--rounds", "1"], "throughput"),
    ("fetch_memory.py", ["--months", "1", "2", "--repeats", "1"], "fetch_memory"),
    (
        "workflow_memory.py",
        ["--months", "1", "2", "--cores", "1", "--repeats", "1"],
        "workflow_memory",
    ),
    ("planning.py", ["--symbols", "3", "--years", "1"], "planning"),
    ("incremental.py", ["--symbols", "3"], "incremental"),
    ("reading.py", ["--symbols", "3", "--years", "1", "--repeats", "1"], "reading"),
    ("crash_trials.py", ["--trials", "1"], "crash_trials"),
    ("s3_planning.py", ["--symbols", "3", "--years", "1"], "s3_planning"),
    ("reconcile.py", ["--symbols", "2", "--months", "1", "--rounds", "1"], "reconcile"),
    (
        "throughput.py",
        ["--symbols", "1", "--months", "1", "--rounds", "1", "--latency-ms", "5"],
        "throughput_latency_50ms",
    ),
    ("incremental.py", ["--symbols", "3"], "incremental_500"),
    ("flat_files.py", ["--symbols", "3", "--days", "2"], "flat_files"),
    ("scale.py", ["--symbols", "5", "--years", "1", "--full-years", "1", "--smoke"], "scale"),
    ("ticks_memory.py", ["--symbol", "AAPL", "--minutes", "2"], "ticks_memory"),
]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True
    ).stdout.strip()


def benchmark_environment() -> dict[str, str]:
    """This environment, with SLURM's client told it has no cluster: where its client is
    installed, Snakemake's SLURM plugin asks the controller for its configuration at every
    start, and without a running one each ask waits about 9 s. The benchmarks use no cluster,
    and measure MarketPipe, not that wait."""
    return {**os.environ, "SLURM_CONF": os.devnull}


def measured_on() -> dict[str, Any]:
    """What the run measures (taken at its start): commit, time, machine."""
    import pyarrow

    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": (
            f"{os.cpu_count()} cores, Python {platform.python_version()}, pyarrow "
            f"{pyarrow.__version__}"
        ),
    }


def main() -> int:
    """Run the scripts; stop at the first that fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--output-dir", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="rerun only this result (e.g. incremental_500); measured.json keeps the others "
        "and says which results a later commit measured",
    )
    args = parser.parse_args()
    output_dir = args.output_dir or HERE / "results"
    source = measured_on()
    results: dict[str, Any] = {}
    chosen = SMOKE if args.smoke else FULL
    if args.only:
        unknown = sorted(set(args.only) - {name for _, _, name in chosen})
        if unknown:
            parser.error(f"--only: no result named {', '.join(unknown)}")
        chosen = [entry for entry in chosen if entry[2] in args.only]
    for script, script_args, name in chosen:
        output = output_dir / f"{name}.json"
        print(f"== {script} {' '.join(script_args)}", flush=True)
        command = [sys.executable, str(HERE / script), *script_args, "--output", str(output)]
        subprocess.run(command, check=True, env=benchmark_environment())
        results[name] = json.loads(output.read_text())
    if not args.smoke:
        payload = {**source, "results": results}
        if args.only:
            payload = json.loads(MEASURED.read_text())
            payload["results"].update(results)
            reruns = payload.setdefault("reruns", {})
            reruns.update({name: source for name in results})
        MEASURED.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        rewrite_page(json.loads(MEASURED.read_text()))
        print(f"wrote {MEASURED} and the table of docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
