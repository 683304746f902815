"""A lake says what it holds, and nothing passes other bars off as those (vendor, feed,
timeframe, adjustment): every command and ``snakemake -n`` stops with one line naming both."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import marketpipe
from marketpipe.lake.identity import IDENTITY_KEY
from tests.workflow_support import (
    ALPACA_KEYS,
    ROOT,
    copy_of,
    lake_hashes,
    marketpipe_command,
    snakemake,
)

pytestmark = pytest.mark.workflow

HOLDS = "holds demo 1Min sip raw bars (synthetic: the bundled simulator's, not market data)"
# What another configuration asks for, and how the refusal names it.
# (--set form, snakemake --config form, how the refusal names the request)
OTHERS = [
    ("vendor=alpaca", "vendor=alpaca", "the config asks for alpaca 1Min sip raw bars"),
    ("timeframe=1Day", "timeframe=1Day", "the config asks for demo 1Day sip raw bars"),
    ("alpaca.feed=iex", "alpaca={feed: iex}", "the config asks for demo 1Min iex raw bars"),
    (
        "alpaca.adjustment=split",
        "alpaca={adjustment: split}",
        "the config asks for demo 1Min sip split bars",
    ),
]
COMMANDS = [
    ("plan",),
    ("status", "--require-complete"),
    ("verify",),
    ("export", "--start", "2024-01-02", "--end", "2024-01-05", "--output", "out.parquet"),
    ("update", "--workflow", str(ROOT)),
]


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        marketpipe_command(*args),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ALPACA_KEYS},
    )


@pytest.fixture(scope="module")
def lake_copy(reference: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_of(reference, tmp_path_factory.mktemp("identity"))


def test_a_lake_records_what_it_holds_and_says_so(lake_copy: Path) -> None:
    recorded = json.loads((lake_copy / "lake" / IDENTITY_KEY).read_text())
    assert recorded == {"adjustment": "raw", "feed": "sip", "timeframe": "1Min", "vendor": "demo"}
    status = run(lake_copy, "status")
    assert status.returncode == 0, status.stderr
    assert HOLDS in status.stdout.splitlines()[0]
    bars = marketpipe.read_bars("AAPL", "2024-01-02", "2024-01-05", data_dir=lake_copy / "lake")
    metadata = bars.schema.metadata
    assert metadata[b"marketpipe.vendor"] == b"demo"
    assert metadata[b"marketpipe.synthetic"] == b"true"


@pytest.mark.parametrize(("override", "snakemake_override", "asks"), OTHERS)
def test_every_command_and_a_dry_run_refuse_another_configuration(
    lake_copy: Path, override: str, snakemake_override: str, asks: str
) -> None:
    before = lake_hashes(lake_copy)
    for command in COMMANDS:
        result = run(lake_copy, *command, "--set", override)
        assert result.returncode != 0, (command, result.stdout)
        assert "complete" not in result.stdout and "OK" not in result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and HOLDS in lines[0] and asks in lines[0], (command, lines)
    env = {**os.environ, **ALPACA_KEYS}
    dry = snakemake(lake_copy, "-n", "--config", snakemake_override, env=env)
    assert dry.returncode != 0
    assert HOLDS in dry.stdout + dry.stderr and asks in dry.stdout + dry.stderr
    assert "Nothing to be done" not in dry.stdout + dry.stderr
    assert lake_unchanged(lake_copy, before)


def lake_unchanged(workdir: Path, before: dict[str, str]) -> bool:
    return lake_hashes(workdir) == before and not (workdir / "out.parquet").exists()


def test_a_lake_older_than_its_record_is_known_by_its_partitions(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    (workdir / "lake" / IDENTITY_KEY).unlink()
    refused = run(workdir, "plan", "--set", "timeframe=1Day")
    assert refused.returncode == 2 and HOLDS in refused.stderr
    assert run(workdir, "plan").returncode == 0
