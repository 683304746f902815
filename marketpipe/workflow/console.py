"""The workflow's console: MarketPipe's scope, one progress line, failures and the verdict.

Snakemake lists every job with every output path (a run of 3 symbols x 2 months printed
169 lines, some 4.5 KB long). A run keeps that listing in Snakemake's own log file
(``.snakemake/log/``) and the JSON logs, and prints warnings and errors that are not about a
job MarketPipe reports itself. ``MARKETPIPE_CONSOLE=full`` shows Snakemake's listing again;
``snakemake -n`` always shows it (there it is the plan).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from snakemake_interface_logger_plugins.common import LogEvent

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.observability.logs import current_run_id
from marketpipe.observability.summary import failure_advice

CONSOLE_VARIABLE = "MARKETPIPE_CONSOLE"
CONSOLE_MODES = ("quiet", "full")
_SNAKEMAKE_STREAM = "DefaultStreamHandler"
# Errors MarketPipe says itself in one line (the failed job, its cause, what to do).
_SAID_BY_MARKETPIPE = (
    "FetchFailed",
    "Exiting because a job execution failed",
    "Cannot restore",
    "At least one job did not complete successfully",
    "--keep-incomplete mode is set",
    # A --config override is how MarketPipe's README runs a second lake: not a warning.
    "is extended by additional config specified via the command line",
)


# Snakemake's notes about itself that say nothing about the lake, in any kind of run.
_NEVER_SHOWN = ("Assuming unrestricted shared filesystem usage",)
# Snakemake's own lines a run keeps: a run with nothing to do says so.
_SAID_BY_SNAKEMAKE = ("Nothing to be done",)


def console_mode() -> str:
    """``quiet`` (the default) or ``full``, from ``$MARKETPIPE_CONSOLE``."""
    mode = os.environ.get(CONSOLE_VARIABLE, "").strip().lower() or "quiet"
    if mode not in CONSOLE_MODES:
        raise ValueError(
            f"environment variable {CONSOLE_VARIABLE}: {mode!r} is not one of "
            f"{', '.join(CONSOLE_MODES)}; unset it for the quiet console"
        )
    return mode


class SnakemakeChatterFilter(logging.Filter):
    """While ``running()`` says a run executes jobs: lets through Snakemake's warnings and
    errors, except those about a failed job (the job's own line says it) and the restore
    notes of a failed job's kept outputs. Otherwise (a dry run, ``--lint``) everything."""

    def __init__(self, running: Callable[[], bool]) -> None:
        super().__init__()
        self.running = running

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the console shows ``record``."""
        if record.getMessage().startswith(_NEVER_SHOWN):
            return False
        if not self.running():
            return True
        if record.levelno < logging.WARNING:
            return record.getMessage().startswith(_SAID_BY_SNAKEMAKE)
            return False
        if getattr(record, "event", None) in (LogEvent.JOB_ERROR, LogEvent.GROUP_ERROR):
            return False
        message = record.getMessage()
        return not any(text in message for text in _SAID_BY_MARKETPIPE)


def quiet_snakemake_console(running: Callable[[], bool]) -> None:
    """Keep Snakemake's per-job listing off the console while ``running()`` (a run that
    executes jobs: a dry run's listing is the plan, ``--lint``'s the lint), unless
    ``MARKETPIPE_CONSOLE=full``. Snakemake decides what kind of run it is after it has read
    the Snakefile, so the filter asks at each record."""
    if console_mode() == "full":
        return
    for handler in logging.getLogger("snakemake.logging").handlers:
        if handler.name == _SNAKEMAKE_STREAM and not any(
            isinstance(existing, SnakemakeChatterFilter) for existing in handler.filters
        ):
            handler.addFilter(SnakemakeChatterFilter(running))


class Console:
    """Lines for the person running the workflow, on stderr; on a terminal one progress
    line is rewritten in place and cleared before any other line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._live = ""
        self._causes: set[str] = set()

    @property
    def stream(self) -> TextIO:
        """Where lines go (``sys.stderr`` at the time of writing, unless given)."""
        return self._stream if self._stream is not None else sys.stderr

    @property
    def is_terminal(self) -> bool:
        """Whether the stream is a terminal (progress is then one updating line)."""
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def say(self, line: str) -> None:
        """Print ``[marketpipe] line`` on a line of its own."""
        with self._lock:
            self._clear()
            self.stream.write(f"[marketpipe] {line}\n")
            self.stream.flush()

    def progress(self, line: str) -> None:
        """Show a progress line: in place on a terminal, else as a line of its own."""
        if not self.is_terminal:
            self.say(line)
            return
        with self._lock:
            text = f"\r[marketpipe] {line}"
            self.stream.write(text + " " * max(0, len(self._live) - len(text)))
            self.stream.flush()
            self._live = text

    def end_progress(self) -> None:
        """Clear the progress line from a terminal."""
        with self._lock:
            self._clear()

    def failure(self, label: str, cause: str, permanent: bool) -> None:
        """One line for a failed job; a cause already said (an outage every job meets) is
        not said again: the verdict lists every job it stopped."""
        with self._lock:
            if cause in self._causes:
                return
            self._causes.add(cause)
        self.say(f"FAILED {label}: {cause} ({failure_advice(permanent)})")

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r" + " " * len(self._live) + "\r")
            self._live = ""


CONSOLE = Console()


def job_failed(error: str, permanent: bool) -> None:
    """Report a failed job (``<what> failed: <cause>``) on the console."""
    label, separator, cause = error.partition(" failed: ")
    if not separator:
        label, cause = "a job", error
    CONSOLE.failure(label.removeprefix("fetching "), cause, permanent)


class RunProgress:
    """A thread of the workflow's main process that shows how far the run is: partitions
    present of those planned, jobs done, rows and pace (every ``interval`` seconds, when
    something changed; every second on a terminal)."""

    def __init__(
        self,
        state_dir: os.PathLike[str] | str,
        planned_partitions: int,
        planned_jobs: int,
        console: Console = CONSOLE,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 15.0,
    ) -> None:
        self.state_dir = state_dir
        self.planned_partitions = planned_partitions
        self.planned_jobs = planned_jobs
        self.console = console
        self.clock = clock
        self.interval = 1.0 if console.is_terminal else interval
        self.started = clock()
        self.present_at_start: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = ""

    def start(self, present_at_start: int) -> None:
        """Start showing progress; ``present_at_start`` partitions were there already."""
        self.present_at_start = present_at_start
        self._thread = threading.Thread(target=self._run, name="marketpipe-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and clear a terminal's progress line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.console.end_progress()

    def _run(self) -> None:
        # A cron log of a day-long backfill gets a line a minute after the first two minutes.
        while not self._stop.wait(
            self.interval if self.clock() - self.started < 120 else max(self.interval, 60.0)
        ):
            self.show()

    def show(self) -> None:
        """Show the current progress line, unless it is the one shown last."""
        line = self.line()
        if line and line != self._shown:
            self._shown = line
            self.console.progress(line)

    def line(self) -> str:
        """``63/123 partitions done (51%), 2/6 jobs, 51,358 rows, 22,213 rows/s, about 4 s
        left`` ("" when the ledger cannot be read just now)."""
        try:
            with CheckpointStore(self.state_dir) as store:
                records = store.job_records(current_run_id())
        except Exception:  # the ledger is being created, or busy: skip this tick
            return ""
        bars = [record for record in records if record.is_bars]
        published = sum(record.published for record in bars)
        rows = sum(record.rows for record in bars)
        present = min(self.planned_partitions, (self.present_at_start or 0) + published)
        total = max(self.planned_partitions, 1)
        elapsed = max(self.clock() - self.started, 1e-9)
        line = (
            f"{present:,}/{self.planned_partitions:,} partitions done "
            f"({100 * present / total:.0f}%), {len(records)}/{self.planned_jobs} jobs, "
            f"{rows:,} rows"
        )
        if rows:
            line += f", {rows / elapsed:,.0f} rows/s"
        remaining = self.planned_partitions - present
        if published and remaining > 0:
            line += f", {describe_time_left(remaining * elapsed / published)}"
        return line


def describe_time_left(seconds: float) -> str:
    """``about 40 s left`` / ``about 12 min left`` / ``about 2.5 h left``."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"
