"""The README's main command and the benchmark scripts still work (not their timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert main(["demo", "--symbols", "aapl"]) == 2
    assert "symbol 'aapl' is not a valid ticker" in capsys.readouterr().err


def test_memory_benchmark_smoke(tmp_path: Path) -> None:
    output = tmp_path / "fetch_memory.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fetch_memory.py"), "--months", "1", "2",
         "--repeats", "1", "--output", str(output)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    result = json.loads(output.read_text())
    assert result["summary"]["2"]["rows"] > result["summary"]["1"]["rows"] > 10_000
    assert result["rss_ratio"] > 0
