"""An index-sized universe on this machine: planning, nothing-due checks, cross-sections, size.

Targets (docs, issue #34):
- cold plan, 500 symbols x 10 years, empty lake: `snakemake -n` <= 60 s, `marketpipe plan`
  <= 10 s, peak RSS <= 2 GB; measured at 100, 250 and 500 symbols so the cost per
  partition is visible;
- nothing due on a full 500-symbol x 2-year lake (~252k partitions): `snakemake -n` and
  `marketpipe update` <= 15 s each, also at 100 and 250 symbols of the same lake;
- a cross-section, 500 symbols x 1 day / x 1 month, `read_bars` <= 1 s / <= 5 s;
- bytes per bar of day files and of month files (month files may not more than double it).

Fixtures are written directly (``fixture_lake.py``), not fetched. Each command runs in a
fresh interpreter; its peak RSS is the child's own (``os.wait4``).

    python benchmarks/scale.py                                  # the sizes above
    python benchmarks/scale.py --symbols 20 --years 1 --smoke   # a quick check that it runs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, workflow_command, write_results
from fixture_lake import symbols, write_fixture_lake, write_real_lake

from marketpipe.lake.consolidated import consolidate
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.reader import read_bars

# A lake with nothing due: no month files, news or corporate actions asked for, so the
# check is planning alone (the month files' own planning is in planning.py's row).
QUIET = {
    "consolidate": False,
    "news": {"fetch": False},
    "corporate_actions": {"fetch": False},
}
CROSS_SECTION_MONTH = (dt.date(2024, 3, 1), dt.date(2024, 3, 28))


def _fresh(command: list[str], cwd: Path) -> dict[str, float]:
    """Run ``command`` under a probe interpreter of its own, so that the peak RSS of the
    probe's children is the command's alone: wall seconds and peak RSS in MB."""
    probe = [sys.executable, str(Path(__file__).resolve()), "--probe", "--", *command]
    result = subprocess.run(probe, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _probe(command: list[str]) -> int:
    """Run ``command`` as this process's only child; print its seconds and peak RSS."""
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        print(result.stdout[-2000:] + result.stderr[-3000:], file=sys.stderr)
        return result.returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
    print(json.dumps({"seconds": round(elapsed, 3), "peak_rss_mb": round(peak_kb / 1024, 1)}))
    return 0


def _write_config(
    workdir: Path, tickers: list[str], start: dt.date, end: dt.date, **more: Any
) -> None:
    config = {"symbols": tickers, "start": start, "end": end, "data_dir": "lake", **more}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def cold_plans(counts: list[int], years: int) -> dict[str, Any]:
    """`snakemake -n` and `marketpipe plan` on an empty lake, per universe size."""
    start, end = dt.date(2025 - years, 1, 2), dt.date(2024, 12, 31)
    results: dict[str, Any] = {}
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="marketpipe-scale-") as scratch:
            workdir = Path(scratch)
            _write_config(workdir, symbols(count), start, end)
            dry = _fresh(workflow_command("--configfile", "config.yaml", "-n", "--quiet"), workdir)
            plan = _fresh(_marketpipe("plan"), workdir)
        results[str(count)] = {"snakemake_n": dry, "marketpipe_plan": plan}
        print(f"cold plan, {count} symbols x {years} years: {dry} / {plan}", flush=True)
    return results


def nothing_due(counts: list[int], years: int) -> dict[str, Any]:
    """`snakemake -n` and `marketpipe update` on a complete lake, per universe size (one
    lake of the largest universe; smaller configs name its first symbols)."""
    start, end = dt.date(2025 - years, 1, 2), dt.date(2024, 12, 31)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="marketpipe-scale-") as scratch:
        workdir = Path(scratch)
        began = time.perf_counter()
        partitions = write_fixture_lake(workdir / "lake", symbols(max(counts)), start, end)
        results["partitions"] = partitions
        results["fixture_write_s"] = round(time.perf_counter() - began, 1)
        os.sync()  # the fixture's writeback must not compete with the timed runs
        for count in counts:
            _write_config(workdir, symbols(count), start, end, **QUIET)
            # The first update adopts the fixture's files into the ledger (a real lake's
            # jobs record them as they write): the check is the second one.
            _fresh(_marketpipe("update", "--workflow", str(ROOT)), workdir)
            dry = _fresh(workflow_command("--configfile", "config.yaml", "-n", "--quiet"), workdir)
            update = _fresh(_marketpipe("update", "--workflow", str(ROOT)), workdir)
            results[str(count)] = {"snakemake_n": dry, "marketpipe_update": update}
            print(f"nothing due, {count} symbols x {years} years: {dry} / {update}", flush=True)
    return results


def cross_section(count: int, smoke: bool) -> dict[str, Any]:
    """``read_bars`` of every symbol for one day and one month, day files and month files;
    bytes per bar of each layout."""
    first, last = CROSS_SECTION_MONTH
    tickers = symbols(count)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="marketpipe-scale-") as scratch:
        lake = Path(scratch) / "lake"
        rows = write_real_lake(lake, tickers, first, last)
        day_bytes = sum(path.stat().st_size for path in (lake / "ohlcv").rglob("*.parquet"))
        os.sync()
        results["rows"] = rows
        results["day_files"] = {"bytes": day_bytes, "bytes_per_bar": day_bytes / rows}
        results["day_file_reads"] = _reads(lake, tickers, first, last, smoke)
        with CheckpointStore(lake) as store:
            consolidate(LocalStore(lake), store)
        month_bytes = sum(
            path.stat().st_size for path in (lake / "ohlcv_monthly").rglob("*.parquet")
        )
        os.sync()
        results["month_files"] = {"bytes": month_bytes, "bytes_per_bar": month_bytes / rows}
        results["month_file_reads"] = _reads(lake, tickers, first, last, smoke)
    print(
        f"cross-section, {count} symbols: {results['day_file_reads']} (day files) / "
        f"{results['month_file_reads']} (month files); bytes per bar "
        f"{results['day_files']['bytes_per_bar']:.1f} (day files) vs "
        f"{results['month_files']['bytes_per_bar']:.1f} (month files)",
        flush=True,
    )
    return results


def _reads(
    lake: Path, tickers: list[str], first: dt.date, last: dt.date, smoke: bool
) -> dict[str, Any]:
    """The best of three reads of one day and of the month, in seconds, and their rows."""
    timings: dict[str, Any] = {}
    for name, (start, end) in {"day": (last, last), "month": (first, last)}.items():
        best, rows = float("inf"), 0
        for _ in range(1 if smoke else 3):
            began = time.perf_counter()
            rows = read_bars(tickers, start, end, data_dir=lake).num_rows
            best = min(best, time.perf_counter() - began)
        timings[name] = {"seconds": round(best, 3), "rows": rows}
    return timings


def _marketpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "marketpipe.cli", *args, "--config", "config.yaml"]


def main() -> int:
    """Measure every part at the sizes asked for and print a summary."""
    if "--probe" in sys.argv:
        return _probe(sys.argv[sys.argv.index("--") + 1 :])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--full-years", type=int, default=2, help="the nothing-due lake's")
    parser.add_argument("--smoke", action="store_true", help="one size, one read each")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    counts = [args.symbols] if args.smoke else [args.symbols // 5, args.symbols // 2, args.symbols]
    results = {
        "symbols": args.symbols,
        "years": args.years,
        "full_years": args.full_years,
        "cold_plan": cold_plans(counts, args.years),
        "nothing_due": nothing_due(counts, args.full_years),
        "cross_section": cross_section(args.symbols, args.smoke),
    }
    write_results("scale", results, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
