"""The SLURM test is never skipped in CI: run as a user who cannot install SLURM, it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SLURM_TEST = Path(__file__).with_name("test_slurm.py")


def test_without_root_the_slurm_test_fails_in_ci_and_skips_elsewhere() -> None:
    """Run the SLURM test as a user who cannot install SLURM: with CI=true it fails."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to drop to nobody) ")
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = [*as_nobody, sys.executable, "-c", f"open({str(SLURM_TEST)!r}).close()"]
    if subprocess.run(probe, capture_output=True, cwd="/", timeout=60).returncode != 0:
        pytest.skip("user nobody cannot read this checkout or its Python")
    command = [
        *as_nobody,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-m",
        "slurm",
        str(SLURM_TEST),
    ]
    outcomes = {}
    for ci in ("true", ""):
        # nobody may not enter pytest's own (root's) temporary directories.
        env = {**os.environ, "CI": ci, "HOME": "/tmp", "PYTEST_DEBUG_TEMPROOT": "/tmp"}
        run = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/", timeout=120)
        outcomes[ci] = (run.returncode, run.stdout + run.stderr)
    assert outcomes["true"][0] == 1 and "CI must run the SLURM test" in outcomes["true"][1]
    assert outcomes[""][0] == 0 and "skipped" in outcomes[""][1]
