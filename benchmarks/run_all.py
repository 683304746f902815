"""Run every benchmark with its full-size defaults, one after another (about 10 minutes here).

python benchmarks/run_all.py          # results in benchmarks/results/*.json
python benchmarks/run_all.py --smoke  # tiny sizes: checks the scripts work, not timings
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

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
]


def main() -> int:
    """Run the scripts; stop at the first that fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--output-dir", type=Path, help="where to write the JSON results")
    args = parser.parse_args()
    for script, script_args, name in SMOKE if args.smoke else FULL:
        extra = ["--output", str(args.output_dir / f"{name}.json")] if args.output_dir else []
        print(f"== {script} {' '.join(script_args)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *script_args, *extra], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
