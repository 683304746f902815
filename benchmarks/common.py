"""Helpers shared by the benchmark scripts: a simulator subprocess and result output."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@contextmanager
def simulator_process(*extra_args: str) -> Iterator[str]:
    """Run ``python -m marketpipe.simulator`` on an OS-chosen port; yield its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "marketpipe.simulator", "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def run_child(script: Path, args: Sequence[str]) -> dict[str, Any]:
    """Run a measurement in a fresh interpreter; it prints one JSON object last."""
    output = subprocess.run(
        [sys.executable, str(script), *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def write_results(name: str, payload: dict[str, Any], output: Path | None = None) -> Path:
    """Write ``payload`` as JSON under ``benchmarks/results`` (or ``output``)."""
    path = output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
