"""Run the simulator as its own process (one server shared by every job of a run)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def simulator_subprocess(*args: str) -> Iterator[str]:
    """Start ``python -m marketpipe.simulator --port 0 ARGS``; yield its URL; stop it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "marketpipe.simulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"the simulator did not start: {line!r}")
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()
