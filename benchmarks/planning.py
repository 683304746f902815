"""Planning speed at scale: `snakemake -n` and `marketpipe plan`, lake empty and lake full.

Targets (docs): 100 symbols x 5 years (~126k partitions): cold `snakemake -n` <= 30 s,
`snakemake -n` with every partition present <= 5 s, `marketpipe plan` <= 5 s.

    python benchmarks/planning.py                      # 100 symbols, 2020-2024
    python benchmarks/planning.py --symbols 5 --years 1   # smoke run
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lake_size_parser, workflow_command, write_results
from fixture_lake import symbols, write_fixture_lake


def _timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{result.stderr[-2000:]}")
    return elapsed


def main() -> int:
    """Measure each case and print a table."""
    parser = lake_size_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    start, end = dt.date(2020, 1, 2), dt.date(2020 + args.years - 1, 12, 31)
    tickers = symbols(args.symbols)
    snakemake = workflow_command("--configfile", "config.yaml", "-n", "--quiet", "rules")
    plan = [sys.executable, "-m", "marketpipe.cli", "plan", "--config", "config.yaml"]
    results: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory(prefix="marketpipe-plan-") as scratch:
        workdir = Path(scratch)
        config = {"symbols": tickers, "start": start, "end": end, "data_dir": "lake"}
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        results["snakemake_n_empty_s"] = _timed(snakemake, workdir)
        results["plan_empty_s"] = _timed(plan, workdir)
        began = time.perf_counter()
        results["partitions"] = write_fixture_lake(workdir / "lake", tickers, start, end)
        results["fixture_write_s"] = time.perf_counter() - began
        results["snakemake_n_full_s"] = _timed(snakemake, workdir)
        results["plan_full_s"] = _timed(plan, workdir)
    rows = [
        ("snakemake -n, nothing on disk", results["snakemake_n_empty_s"], 30.0),
        ("snakemake -n, every partition present", results["snakemake_n_full_s"], 5.0),
        ("marketpipe plan, nothing on disk", results["plan_empty_s"], 5.0),
        ("marketpipe plan, every partition present", results["plan_full_s"], 5.0),
    ]
    print(f"{args.symbols} symbols x {args.years} year(s): {results['partitions']:,} partitions")
    print(f"{'case':<42} {'seconds':>8} {'target':>7}")
    for name, seconds, target in rows:
        verdict = "ok" if seconds <= target else "MISSED"
        print(f"{name:<42} {seconds:>8.2f} {target:>6.0f}s  {verdict}")
    write_results(
        "planning", {"symbols": args.symbols, "years": args.years, **results}, args.output
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
