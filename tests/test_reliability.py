"""Reliability under crashes, faults, a shared rate budget and bad input (workflow level)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from marketpipe.chaos import CRASH_POINTS
from marketpipe.crash_trials import run_crash_trial
from tests.workflow_support import lake_hashes, snakemake_command, write_config

pytestmark = pytest.mark.workflow

# Upper bounds on how often each point is reached in the reference run (2 symbols x 3 months).
_ARRIVALS = {"request": 10, "parquet_write": 110, "checkpoint_commit": 110}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_a_random_moment_then_recovery_is_byte_identical(
    point: str, reference: Path, tmp_path: Path
) -> None:
    nth = random.Random(f"crash-trial-{point}").randint(1, _ARRIVALS[point])
    workdir = tmp_path / "trial"
    write_config(workdir)
    result = run_crash_trial(
        command=snakemake_command(workdir, "--cores", "8"),
        workdir=workdir,
        data_dir=workdir / "lake",
        point=point,
        nth=nth,
        reference=lake_hashes(reference),
        unlock_command=snakemake_command(workdir, "--unlock"),
    )
    assert result.crashed, f"the run reached {point} fewer than {nth} times"
    assert result.passed, result
