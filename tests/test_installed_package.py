"""A plain (non-editable) install works: the wheel, in a fresh virtual environment.

The wheel is built from this checkout and installed into a new venv outside the repository;
its dependencies come from the test environment (a path file), so nothing is downloaded. The
workflow commands run inside a copy of the workflow repository, and ``read_bars`` from a
directory with no workflow at all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles")
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]

pytestmark = pytest.mark.workflow


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A venv holding only the wheel of this checkout; the test environment's packages
    (snakemake, pyarrow ...) are visible to it through a path file."""
    base = tmp_path_factory.mktemp("installed")
    wheels = base / "wheels"
    subprocess.run(
        [*PIP_WHEEL, "--wheel-dir", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("marketpipe-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    return venv, env


def test_the_wheel_is_what_runs(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    venv, env = installed
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import marketpipe; print(marketpipe.__file__)"],
        tmp_path,
        env,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    assert _run([str(venv / "bin" / "marketpipe"), "--help"], tmp_path, env).returncode == 0


def test_the_simulator_starts_and_stops(installed: tuple[Path, dict[str, str]], tmp_path: Path):
    venv, env = installed
    process = subprocess.Popen(
        [str(venv / "bin" / "marketpipe"), "simulator", "--port", "0"],
        cwd=tmp_path,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "listening on http://127.0.0.1:" in line
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in errors


def test_workflow_commands_in_a_clone_and_readers_anywhere(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    marketpipe = str(venv / "bin" / "marketpipe")
    clone = tmp_path / "clone"
    for name in WORKFLOW_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, clone / name)
        else:
            clone.mkdir(exist_ok=True)
            shutil.copy2(source, clone / name)
    overrides = ["--set", "symbols=AAPL,MSFT", "--set", "end=2024-01-31"]
    plan = _run([marketpipe, "plan", *overrides], clone, env)
    assert plan.returncode == 0, plan.stderr
    update = _run([marketpipe, "update", *overrides], clone, env)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "complete" in update.stdout
    for command in ("status", "verify"):
        result = _run([marketpipe, command, *overrides], clone, env)
        assert result.returncode == 0, result.stdout + result.stderr

    elsewhere = tmp_path / "notebook"
    elsewhere.mkdir()
    outside = _run([marketpipe, "update"], elsewhere, env)
    assert outside.returncode == 2
    assert "no MarketPipe workflow in" in outside.stderr and "--workflow" in outside.stderr

    read = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import datetime as dt, marketpipe; t = marketpipe.read_bars('AAPL', "
            "dt.date(2024, 1, 2), dt.date(2024, 1, 31), "
            f"data_dir={str(clone / 'data')!r}); print(t.num_rows)",
        ],
        elsewhere,
        env,
    )
    assert int(read.stdout) > 0
