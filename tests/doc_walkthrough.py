"""Running what the README and the docs show: every command and Python block, in order, on a
copy of the workflow (tests/test_readme.py, tests/test_docs.py).

Shell lines run as written (``.venv/bin/`` is this test environment's); Python blocks run as
scripts; the S3 examples run against moto's server; the vendor examples against the
simulator. The few lines that cannot run on a test machine (installing, the host's crontab
and systemd, a cluster) are listed in ``NOT_RUN`` with the reason, so a new command is
either run here or explained.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.s3_server import S3Server
from tests.workflow_support import ROOT

BIN = Path(sys.executable).parent
# The market's clock for the walk-through: 2024-03-28, the last day the README fetches, is final.
NOW = "2024-03-29T12:00:00-04:00"
NOT_RUN = {
    "python3 -m venv": "installing is what .ci/run does before this test",
    ".venv/bin/pip install": "installing is what .ci/run does before this test",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/ruff": "run by .ci/run",
    ".venv/bin/mkdocs": "tests/test_docs.py builds the site",
    "export APCA_API_KEY_ID": "the test sets the simulator's keys itself",
    "crontab -e": "edits the host's crontab",
    "sudo ": "installs systemd units on the host",
    "journalctl": "reads the host's systemd journal",
    "tail data/_logs/update.log": "written by the cron recipe's redirect, which is not run",
    "export AWS_": "the test points every command at moto's S3 server instead",
    "export APCA_API_DATA_URL": "the test points the clients at its own simulator instead",
    ".venv/bin/snakemake --workflow-profile profiles/cluster-local": (
        "a cluster run: tests/test_cluster.py runs this profile"
    ),
    ".venv/bin/snakemake --workflow-profile profiles/slurm": (
        "a SLURM run: tests/test_slurm.py runs this profile on a SLURM it starts"
    ),
    "squeue ": "a SLURM run's jobs: tests/test_slurm.py reads them",
    "sacct ": "needs SLURM accounting (slurmdbd)",
    ".venv/bin/python benchmarks/crash_trials.py": (
        "30 kill -9 trials take minutes; test_reliability.py runs crash trials"
    ),
    "zipline ": (
        "reads the bundle registered in ~/.zipline/extension.py; "
        "tests/test_bridge_zipline.py ingests one and runs an algorithm over it"
    ),
}
# Python blocks that need what MarketPipe does not install, by their first line.
PYTHON_NOT_RUN = {
    "import vectorbt": (
        "vectorbt is not a MarketPipe dependency; tests/test_reading.py checks the wide frame "
        "it is given, and the pandas block before it runs"
    ),
}


def fenced_blocks(*pages: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of ``pages``, in order."""
    return [
        block
        for page in pages
        for block in re.findall(r"```(\w*)\n(.*?)```", page.read_text(), re.S)
    ]


def shell_commands(text: str) -> list[str]:
    """The commands of a shell block: continuations joined, comments and blanks dropped,
    ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", "", text)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        commands.extend(part.strip() for part in line.split(" && ") if part.strip())
    return commands


def _skipped(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def _run(command: str, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = command.replace(".venv/bin/", f"{BIN}/")
    command = re.sub(r"^marketpipe ", f"{BIN}/marketpipe ", command)
    command = re.sub(r"^python ", f"{sys.executable} ", command)
    return subprocess.run(
        command, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )


def _simulator(workdir: Path, command: str, env: dict[str, str]) -> None:
    """``marketpipe simulator --port N``: started on an OS-chosen port, answered, stopped."""
    argv = [str(BIN / "marketpipe"), *command.split()[1:]]
    argv[argv.index("--port") + 1] = "0"
    process = subprocess.Popen(
        argv, cwd=workdir, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and "listening on" in process.stdout.readline()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0


def run_every_block(
    blocks: list[tuple[str, str]],
    s3_api: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    """Run ``blocks`` in order in a fresh copy of the workflow; return how many ran."""
    workdir = tmp_path / "clone"
    workdir.mkdir()
    for name in ("Snakefile", "workflow", "config", "profiles", "deploy", "benchmarks"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, workdir / name)
        else:
            shutil.copy2(source, workdir / name)
    s3_api.point_here(monkeypatch)
    s3_api.create_bucket()  # a bucket for the walk-through's own
    import boto3

    boto3.client("s3", endpoint_url=s3_api.url).create_bucket(Bucket="my-bucket")
    with subprocess.Popen(
        [sys.executable, "-m", "marketpipe.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as vendor:
        try:
            assert vendor.stdout is not None
            url = vendor.stdout.readline().strip().rsplit(" ", 1)[-1]
            env = {
                **os.environ,
                **s3_api.environment,
                "MARKETPIPE_NOW": NOW,
                "APCA_API_DATA_URL": url,
                "APCA_API_KEY_ID": "demo",
                "APCA_API_SECRET_KEY": "demo",
                "POLYGON_API_URL": url,
                "POLYGON_API_KEY": "demo",
            }
            return _walk_through(blocks, workdir, env)
        finally:
            vendor.send_signal(signal.SIGINT)


def _walk_through(blocks: list[tuple[str, str]], workdir: Path, env: dict[str, str]) -> int:
    ran = 0
    for language, text in blocks:
        first_line = text.splitlines()[0] if text else ""
        if language == "python" and any(map(first_line.startswith, PYTHON_NOT_RUN)):
            continue
        if language == "python":
            script = workdir / "example.py"
            script.write_text(text)
            result = subprocess.run(
                [sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, f"{text}\n{result.stderr[-3000:]}"
            ran += 1
        elif language == "bash":
            for command in shell_commands(text):
                if _skipped(command):
                    continue
                if command.startswith("marketpipe simulator"):
                    _simulator(workdir, command, env)
                else:
                    result = _run(command, workdir, env)
                    output = result.stdout + result.stderr
                    assert result.returncode == 0, f"{command}\n{output[-3000:]}"
                    assert "Traceback" not in output, f"{command}\n{output[-3000:]}"
                ran += 1
    return ran
