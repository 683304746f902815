"""Many crash trials: kill the workflow at random moments, recover, and tally the outcomes.

Each trial runs the workflow (2 symbols x 3 months on the bundled simulator) with a crash
at a random point and arrival, recovers with `snakemake --unlock` and the same command,
and checks the lake is byte-identical to an uninterrupted run, the ledger agrees with the
files, no temporary files remain and SQLite's integrity check passes.

    python benchmarks/crash_trials.py --trials 30 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' crash trials

from common import workflow_command, write_results

from marketpipe.chaos import CRASH_POINTS
from tests.chaos_trials import SMALL_RUN_ARRIVALS, lake_hashes, run_crash_trial

CONFIG = {
    "symbols": ["AAPL", "MSFT"],
    "start": "2024-01-02",
    "end": "2024-03-28",
    "data_dir": "lake",
}


def _command(workdir: Path, *args: str) -> list[str]:
    return workflow_command(
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args
    )


def _prepare(workdir: Path) -> None:
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))


def main() -> int:
    """Run the trials and print the tally."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="marketpipe-crash-") as scratch:
        reference_dir = Path(scratch) / "reference"
        _prepare(reference_dir)
        subprocess.run(_command(reference_dir, "--cores", "8"), check=True, capture_output=True)
        reference = lake_hashes(reference_dir / "lake")
        results = []
        for trial in range(args.trials):
            point = rng.choice(CRASH_POINTS)
            nth = rng.randint(1, SMALL_RUN_ARRIVALS[point])
            workdir = Path(scratch) / f"trial-{trial}"
            _prepare(workdir)
            result = run_crash_trial(
                _command(workdir, "--cores", "8"),
                workdir,
                workdir / "lake",
                point,
                nth,
                reference,
            )
            results.append(result)
            verdict = "ok" if result.passed else "FAILED"
            crashed = "crashed" if result.crashed else "no crash (run ended first)"
            moment = f"{point}:{nth}"
            print(f"trial {trial + 1:>3}: {moment:<22} {crashed:<27} {verdict}", flush=True)
    tally = collections.Counter((r.point, r.crashed, r.passed) for r in results)
    print("\npoint              crashed  passed  trials")
    for (point, crashed, passed), count in sorted(tally.items()):
        print(f"{point:<18} {crashed!s:<8} {passed!s:<7} {count}")
    failed = [r for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} trials recovered byte-identically")
    write_results(
        "crash_trials",
        {"seed": args.seed, "trials": [asdict(r) for r in results], "failed": len(failed)},
        args.output,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
