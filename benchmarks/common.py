"""Helpers shared by the benchmark scripts: a simulator subprocess and result output."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def workflow_command(*args: str) -> list[str]:
    """``python -m snakemake`` on this repository's Snakefile, plus ``args``."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]


def run_workflow(
    workdir: Path,
    config: dict[str, Any],
    *args: str,
    env: dict[str, str] | None = None,
    request_log: Path | None = None,
) -> tuple[float, list[Any]]:
    """Run the repository's workflow on ``config`` in ``workdir`` (``--cores 2``).

    Returns the wall time and the requests the simulator served: the bundled one's (vendor
    demo), or those logged in ``request_log`` by a simulator process.
    """
    from marketpipe.simulator import read_request_log

    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = workflow_command("--configfile", "config.yaml", "--cores", "2", *args)
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, check=False, env=env
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"the workflow failed in {workdir}:\n{result.stderr[-4000:]}")
    log = request_log or workdir / "lake" / "_state" / "simulator-requests.jsonl"
    return elapsed, read_request_log(log)


def run_child(script: Path, args: Sequence[str]) -> dict[str, Any]:
    """Run a measurement in a fresh interpreter; it prints one JSON object last."""
    output = subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def lake_size_parser(description: str) -> argparse.ArgumentParser:
    """Options of the scripts that build a 100-symbol x 5-year lake: size and output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--output", type=Path)
    return parser


def write_results(name: str, payload: dict[str, Any], output: Path | None = None) -> Path:
    """Write ``payload`` as JSON under ``benchmarks/results`` (or ``output``) and say where."""
    path = output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
