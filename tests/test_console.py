"""The workflow's console: a progress line, one line per failure cause, Snakemake's listing
kept out of a run (not out of a dry run), and Ctrl-C reported as an interruption (exit 130)."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest
from snakemake_interface_logger_plugins.common import LogEvent

from marketpipe.lake.ledger import CheckpointStore, JobRecord
from marketpipe.observability.logs import current_run_id
from marketpipe.workflow.console import (
    Console,
    RunProgress,
    SnakemakeChatterFilter,
    console_mode,
    describe_time_left,
    job_failed,
)
from tests.workflow_support import snakemake_command, write_config


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(job: str, published: int, rows: int, symbol: str = "AAPL") -> JobRecord:
    return JobRecord(
        run_id=current_run_id(),
        job=job,
        symbol=symbol,
        status="ok",
        error=None,
        planned=published,
        missing=published,
        published=published,
        rows=rows,
        rejected_rows=0,
        requests=1,
        started_at=0.0,
        finished_at=1.0,
        metrics={},
    )


def test_progress_counts_this_runs_partitions_and_not_news_articles(tmp_path: Path) -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = RunProgress(tmp_path, 123, 6, console=Console(stream), clock=lambda: now[0])
    progress.present_at_start = 3
    with CheckpointStore(tmp_path) as store:
        store.record_job(_record("AAPL 2024-01", 60, 50_000))
        store.record_job(_record("news 2024-01", 0, 138, symbol="news"))
    now[0] = 110.0
    progress.show()
    assert stream.getvalue() == (
        "[marketpipe] 63/123 partitions done (51%), 2/6 jobs, 50,000 rows, 5,000 rows/s, "
        "about 10 s left\n"
    )
    progress.show()  # nothing changed: nothing printed again
    assert stream.getvalue().count("\n") == 1


def test_progress_is_one_line_rewritten_in_place_on_a_terminal(tmp_path: Path) -> None:
    terminal = _Terminal()
    console = Console(terminal)
    progress = RunProgress(tmp_path, 10, 2, console=console, clock=lambda: 5.0)
    assert progress.interval == 1.0
    console.progress("1/10 partitions done")
    console.say("a line of its own")
    text = terminal.getvalue()
    assert text.startswith("\r[marketpipe] 1/10 partitions done")
    assert text.endswith("\r[marketpipe] a line of its own\n")  # the live line was cleared


def test_a_cause_every_job_meets_is_said_once() -> None:
    stream = io.StringIO()
    console = Console(stream)
    cause = "cannot reach data.alpaca.markets:443: the name does not resolve"
    console.failure("AAPL..SPY (3 symbols) 2024-01", cause, permanent=False)
    console.failure("news 2024-01-02..2024-01-31", cause, permanent=False)
    lines = stream.getvalue().splitlines()
    assert lines == [
        f"[marketpipe] FAILED AAPL..SPY (3 symbols) 2024-01: {cause} "
        "(transient: the next run tries again)"
    ]


def test_a_failed_jobs_error_names_what_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    job_failed("fetching ZZZZ 2024-01-02..2024-01-31 failed: the vendor does not know ZZZZ", True)
    assert capsys.readouterr().err == (
        "[marketpipe] FAILED ZZZZ 2024-01-02..2024-01-31: the vendor does not know ZZZZ "
        "(permanent: a person must fix this; the next run will fail alike until then)\n"
    )


def test_time_left_reads_like_a_person_would_say_it() -> None:
    assert describe_time_left(0.2) == "about 1 s left"
    assert describe_time_left(75) == "about 75 s left"
    assert describe_time_left(12 * 60) == "about 12 min left"
    assert describe_time_left(2.5 * 3600) == "about 2.5 h left"


def _log(level: int, message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("snakemake.logging", level, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_snakemakes_listing_is_kept_out_only_while_jobs_run() -> None:
    running = [True]
    chatter = SnakemakeChatterFilter(lambda: running[0])
    assert not chatter.filter(_log(logging.INFO, "localrule fetch_2024_01_0:"))
    assert not chatter.filter(_log(logging.WARNING, "Cannot restore data/x.parquet: no backup"))
    assert not chatter.filter(_log(logging.ERROR, "Error in rule", event=LogEvent.JOB_ERROR))
    assert chatter.filter(_log(logging.ERROR, "SyntaxError in file Snakefile, line 3"))
    running[0] = False  # a dry run, --lint: Snakemake's output is the product
    assert chatter.filter(_log(logging.INFO, "rule fetch_2024_01_0:"))


def test_a_bad_console_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETPIPE_CONSOLE", "loud")
    with pytest.raises(ValueError, match="environment variable MARKETPIPE_CONSOLE: 'loud'"):
        console_mode()


@pytest.mark.workflow
def test_ctrl_c_is_an_interruption_with_exit_130(tmp_path: Path) -> None:
    # A slow run: a request budget of 30 a minute keeps it going for minutes.
    write_config(tmp_path, end="2024-06-28", alpaca={"requests_per_minute": 30}, symbols_per_job=1)
    process = subprocess.Popen(
        snakemake_command(tmp_path, "--cores", "2"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((tmp_path / "lake" / "ohlcv").glob("*/*/*/*/bars.parquet")):
            assert process.poll() is None and time.monotonic() < deadline, "no partition yet"
            time.sleep(0.1)  # polling for the run's first file, not waiting out a race
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-3000:]
    assert "MarketPipe run" in stdout and ": interrupted" in stdout
    assert "[marketpipe] interrupted:" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stdout + stderr
