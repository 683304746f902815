"""Peak RSS of the whole workflow process backfilling one symbol: 1 month vs 12 months.

Runs `snakemake` (vendor alpaca, pointed at a simulator in another process, so only the
pipeline's own memory counts) from a fresh interpreter that reports its child's peak RSS
(`resource.RUSAGE_CHILDREN`), at `--cores 1` and `--cores 2`,
alternating the two lengths; reports the medians and the 12 / 1 month ratio per core count.
With `--cores 2` the 1-month run has one job and the 12-month run two at a time, so that
ratio also includes the second job's working set.

    python benchmarks/workflow_memory.py
    python benchmarks/workflow_memory.py --months 1 2 --cores 1 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, workflow_command, write_results

from marketpipe.simulator.process import simulator_subprocess

START = dt.date(2024, 1, 2)
# Runs the command given as arguments and prints its peak RSS in KiB (Linux units).
_PEAK_OF_CHILD = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def month_end(months: int) -> dt.date:
    """The last day of the ``months``-th month of 2024."""
    first_of_next = dt.date(2024 + months // 12, months % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def peak_rss_mb(url: str, months: int, cores: int) -> float:
    """Run the backfill in a fresh process and return its peak RSS in MB."""
    with tempfile.TemporaryDirectory(prefix="marketpipe-memory-") as scratch:
        config = {
            "symbols": ["AAPL"],
            "start": START,
            "end": month_end(months),
            "data_dir": "lake",
            "vendor": "alpaca",
            "alpaca": {"base_url": url, "requests_per_minute": 100_000},
        }
        (Path(scratch) / "config.yaml").write_text(yaml.safe_dump(config))
        environment = {**os.environ, "APCA_API_KEY_ID": "demo", "APCA_API_SECRET_KEY": "demo"}
        command = workflow_command("--configfile", "config.yaml", "--cores", str(cores))
        result = subprocess.run(
            [sys.executable, "-c", _PEAK_OF_CHILD, *command],
            cwd=scratch,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def main() -> int:
    """Measure, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, nargs=2, default=[1, 12])
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    short, long = args.months
    samples: dict[str, list[float]] = {}
    with simulator_subprocess("--rate-limit", "0") as url:
        for _ in range(args.repeats):
            for cores in args.cores:
                for months in (short, long):
                    samples.setdefault(f"{cores}:{months}", []).append(
                        peak_rss_mb(url, months, cores)
                    )
    print(f"workflow peak RSS, one symbol, {short} vs {long} months (target <= 1.2x)")
    print(f"{'cores':>5} {f'{short} month MB':>12} {f'{long} months MB':>13} {'ratio':>6}")
    summary = {}
    for cores in args.cores:
        first, second = median(samples[f"{cores}:{short}"]), median(samples[f"{cores}:{long}"])
        summary[str(cores)] = {"short_mb": first, "long_mb": second, "ratio": second / first}
        print(f"{cores:>5} {first:>12.1f} {second:>13.1f} {second / first:>6.2f}")
    write_results(
        "workflow_memory",
        {"months": args.months, "samples": samples, "summary": summary},
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
