"""The README's main command and the benchmark scripts still work (not their timings)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from marketpipe.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_fetches_from_the_bundled_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["demo", "--symbols", "AAPL,MSFT", "--start", "2024-01-02", "--end", "2024-01-03"])
        == 0
    )
    out = capsys.readouterr().out
    assert "AAPL" in out and "MSFT" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert int(total.split()[1].replace(",", "")) > 1000


def test_demo_rejects_a_bad_symbol_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--symbols", "AAPL!"]) == 2
    assert "symbol 'AAPL!' is not a valid ticker" in capsys.readouterr().err


def test_every_benchmark_script_still_runs(tmp_path: Path) -> None:
    """The reduced run of benchmarks/run_all.py: scripts work; timings are not judged here."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run_all.py"),
            "--smoke",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    memory = json.loads((tmp_path / "fetch_memory.json").read_text())
    assert memory["summary"]["2"]["rows"] > memory["summary"]["1"]["rows"] > 10_000
    workflow_memory = json.loads((tmp_path / "workflow_memory.json").read_text())
    assert workflow_memory["summary"]["1"]["short_mb"] > 50
    floor = json.loads((tmp_path / "requests_floor.json").read_text())
    assert floor["requests"] >= floor["floor"] > 0
    planning = json.loads((tmp_path / "planning.json").read_text())
    assert planning["partitions"] == 3 * 253
    incremental = json.loads((tmp_path / "incremental.json").read_text())
    assert incremental["one_per_symbol"]["requests"] == 3
    assert incremental["packed"]["requests"] == incremental["packed"]["floor"] == 1
    throughput = json.loads((tmp_path / "throughput.json").read_text())
    rows = throughput["rows"]  # each side's own count: both wrote every bar
    assert rows["marketpipe"] == rows["alpaca-py"] > 10_000 and throughput["speedup"] > 0
    # The floor received exactly the bars MarketPipe asked for, with its requests.
    assert rows["floor"] == rows["marketpipe"]
    assert throughput["requests"]["floor"] == throughput["requests"]["marketpipe"]
    flat = json.loads((tmp_path / "flat_files.json").read_text())
    assert flat["lakes_agree"] and flat["flat_files"]["file_reads"] == 2
    assert flat["flat_files"]["bar_requests"] == 0 < flat["rest"]["bar_requests"]
    scale = json.loads((tmp_path / "scale.json").read_text())
    assert scale["nothing_due"]["partitions"] == 5 * 252
    assert scale["cross_section"]["month_file_reads"]["month"]["rows"] > 0
    polygon = json.loads((tmp_path / "requests_floor_polygon.json").read_text())
    assert polygon["vendor"] == "polygon" and polygon["requests"] == polygon["floor"] == 2
    reconciled = json.loads((tmp_path / "reconcile.json").read_text())
    assert sorted(reconciled["differences"]) == ["close", "missing_in_b", "volume"]
    crashes = json.loads((tmp_path / "crash_trials.json").read_text())
    assert crashes["failed"] == 0 and len(crashes["trials"]) == 1
    reading = json.loads((tmp_path / "reading.json").read_text())
    assert reading["month_files"] == 3 * 12 and reading["rows_full"] == reading["rows"]
    # The benchmarks page's table renders from these results (every key it needs is written).
    results = {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    table = benchmark_table()
    measured = {"commit": "0" * 40, "dirty": False, "measured_at": "now", "machine": "here"}
    rendered = table.render({**measured, "results": results})
    assert rendered.count("\n| ") == len(table.ROWS)  # the rows below the header


def benchmark_table() -> Any:
    """``benchmarks/table.py`` as a module."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module("table")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_the_readme_benchmark_table_is_rendered_from_the_committed_results() -> None:
    table = benchmark_table()
    measured = json.loads(table.MEASURED.read_text())
    assert table.page_table() == table.render(measured)
    assert len(measured["commit"]) == 40 and set(measured["results"]) >= {
        "throughput",
        "reading",
        "planning",
    }
