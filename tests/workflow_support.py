"""Helpers for tests that run the Snakemake workflow in a temporary directory."""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import yaml

from marketpipe.lake.storage import LAKE_DIR, partition_path
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.markettime.timeutil import parse_rfc3339
from marketpipe.simulator import LoggedRequest, read_request_log
from marketpipe.simulator.process import simulator_subprocess
from tests import chaos_trials as trials

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["AAPL", "MSFT"]
START, END = dt.date(2024, 1, 2), dt.date(2024, 3, 28)
DAYS = [session.date for session in trading_sessions(START, END)]
CONFIG = {"symbols": SYMBOLS, "start": START, "end": END, "data_dir": "lake"}
BARS_PATH = "/v2/stocks/bars"  # the multi-symbol bars endpoint (news and actions have their own)


# Snakemake's own defaults but without the profile: every job becomes its own process.
PROCESS_JOBS = (
    "--workflow-profile",
    "none",
    "--scheduler",
    "greedy",
    "--rerun-triggers",
    "mtime",
    "--keep-going",
)


def write_config(workdir: Path, **changes: object) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump({**CONFIG, **changes}))


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line running the repository's workflow on ``workdir/config.yaml``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *args,
    ]


# The vendor "alpaca" pointed at a simulator: any non-empty keys pass.
ALPACA_KEYS = {"APCA_API_KEY_ID": "demo", "APCA_API_SECRET_KEY": "demo"}


def marketpipe_command(*args: str) -> list[str]:
    """``marketpipe ARGS --config config.yaml``, run from a test's working directory."""
    return [sys.executable, "-m", "marketpipe.cli", *args, "--config", "config.yaml"]


def snakemake(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the workflow to completion and capture its output."""
    return subprocess.run(
        snakemake_command(workdir, *args),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
        env=env,
    )


def lake_hashes(workdir: Path) -> dict[str, str]:
    """sha256 of every partition of the test lake under ``workdir``."""
    return trials.lake_hashes(workdir / "lake")


def request_log(workdir: Path) -> list[LoggedRequest]:
    return read_request_log(workdir / "lake" / "_state" / "simulator-requests.jsonl")


def requested_days(entry: LoggedRequest) -> set[dt.date]:
    start = parse_rfc3339(entry.params["start"]).astimezone(NEW_YORK).date()
    end = parse_rfc3339(entry.params["end"]).astimezone(NEW_YORK).date()
    return {session.date for session in trading_sessions(start, end)}


def copy_of(reference: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "work"
    shutil.copytree(reference, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    return workdir


def simulator_process(log_file: Path, *args: str) -> AbstractContextManager[str]:
    """A simulator in its own process that logs to ``log_file``; yields its URL."""
    return simulator_subprocess("--log-file", str(log_file), *args)


def max_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window of that length."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - index for index, t in enumerate(ordered)),
        default=0,
    )


def kill_controller_mid_run(
    command: list[str], workdir: Path, env: dict[str, str], lake: Any
) -> bool:
    """Start the workflow's controller, kill its process group with SIGKILL once the first
    partition is in ``lake`` (bounded wait), and say whether it was still running then. The
    jobs it submitted to an executor live on, as a killed controller's would."""
    with open(workdir / "controller.log", "w") as log:
        controller = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True
        )
        pause = threading.Event()
        for _ in range(6000):  # until the first partition is in the bucket (bounded)
            if lake.list(LAKE_DIR) or controller.poll() is not None:
                break
            pause.wait(0.01)
        running = controller.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(timeout=60)
    return running


def planned_after_deleting(
    workdir: Path, partitions: list[tuple[str, dt.date]], env: dict[str, str] | None = None
) -> list[str]:
    """Delete these partitions of ``workdir``'s lake; the partitions ``snakemake -n`` then
    names as missing, sorted."""
    for symbol, day in partitions:
        partition_path(workdir / "lake", symbol, day).unlink()
    return missing_partitions_named(snakemake(workdir, "-n", env=env).stdout)


def missing_partitions_named(dry_run_output: str) -> list[str]:
    """The bar partitions a ``snakemake -n`` output names as missing outputs, sorted (the
    consolidation jobs' markers are missing outputs too)."""
    missing = re.findall(r"Missing output files: ([^;\n]*)", dry_run_output)
    return sorted(path for line in missing for path in line.split(", ") if f"/{LAKE_DIR}/" in path)
