"""The Snakemake workflow end to end, on the bundled simulator (2 symbols x 3 months)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import file_sha256, partition_path
from marketpipe.lake.validation import validate_bars
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from tests.chaos_trials import bar_files
from tests.readers import assert_every_reader_agrees
from tests.workflow_support import (
    BARS_PATH,
    DAYS,
    PROCESS_JOBS,
    ROOT,
    START,
    SYMBOLS,
    copy_of,
    lake_hashes,
    marketpipe_command,
    planned_after_deleting,
    request_log,
    requested_days,
    snakemake,
    snakemake_command,
    write_config,
)

pytestmark = pytest.mark.workflow


def test_default_config_runs_offline_end_to_end(tmp_path: Path) -> None:
    """The README's main command: the shipped config, the simulator, no keys, no network."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert shipped["vendor"] == "demo"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(ROOT / "config" / "config.yaml"),
        "--cores",
        "8",
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    days = trading_sessions(shipped["start"], shipped["end"])
    for symbol in shipped["symbols"]:
        for session in days:
            assert partition_path(tmp_path / "data", symbol, session.date).exists()
    assert assert_every_reader_agrees(tmp_path / "data") > 0


def test_fresh_run_fills_every_planned_partition(reference: Path) -> None:
    for symbol in SYMBOLS:
        for day in DAYS:
            assert partition_path(reference / "lake", symbol, day).exists()
    dataset = ds.dataset(reference / "lake" / "ohlcv", partitioning="hive", format="parquet")
    table = dataset.to_table()
    with CheckpointStore(reference / "lake") as store:
        ledger = store.all_entries()
    assert len(ledger) == len(SYMBOLS) * len(DAYS)
    assert table.num_rows == sum(entry.rows for entry in ledger) > 100_000
    assert set(table["symbol"].to_pylist()) == set(SYMBOLS)
    dry = snakemake(reference, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_deleted_partitions_are_planned_and_refetched_exactly(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    deleted = [
        ("AAPL", dt.date(2024, 1, 17)),
        ("MSFT", dt.date(2024, 2, 8)),
        ("AAPL", dt.date(2024, 3, 21)),
    ]
    named = planned_after_deleting(workdir, deleted)
    assert named == sorted(str(partition_path("lake", s, d)) for s, d in deleted)
    already = len(request_log(workdir))
    result = snakemake(workdir, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    new_requests = request_log(workdir)[already:]
    assert len(new_requests) == 3
    assert sorted((e.symbols[0], *requested_days(e)) for e in new_requests) == sorted(deleted)
    assert lake_hashes(workdir) == lake_hashes(reference)


@pytest.mark.parametrize(
    ("symbols_per_job", "requested"),
    [(10, [tuple(SYMBOLS)]), (1, [(symbol,) for symbol in SYMBOLS])],
    ids=["packed", "one-per-symbol"],
)
def test_extending_end_fetches_only_the_new_days(
    reference: Path, tmp_path: Path, symbols_per_job: int, requested: list[tuple[str, ...]]
) -> None:
    """One request per symbol at most; by default both symbols share it (a page holds both)."""
    workdir = copy_of(reference, tmp_path)
    already = len(request_log(workdir))
    result = snakemake(
        workdir, "--cores", "8", "--config", "end=2024-04-02", f"symbols_per_job={symbols_per_job}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    new_requests = [e for e in request_log(workdir)[already:] if e.path == BARS_PATH]
    assert sorted(tuple(e.symbols) for e in new_requests) == requested
    new_days = {dt.date(2024, 4, 1), dt.date(2024, 4, 2)}  # 03-29 is Good Friday
    assert all(requested_days(e) == new_days for e in new_requests)
    for symbol in SYMBOLS:
        for day in new_days:
            assert partition_path(workdir / "lake", symbol, day).exists()


def test_jobs_as_separate_processes_see_the_plan_of_their_run(
    reference: Path, tmp_path: Path
) -> None:
    """Each job process reads the workflow again while earlier jobs have already written
    partitions; it must still find its own job (the plan is the run's, not the lake's)."""
    workdir = tmp_path / "processes"
    write_config(workdir, symbols_per_job=1)
    result = snakemake(workdir, "--cores", "1", *PROCESS_JOBS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert lake_hashes(workdir) == lake_hashes(reference)
    assert not list((workdir / "lake" / "_state").glob("plans/*"))


def test_crash_then_documented_recovery_is_byte_identical(reference: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "crash"
    write_config(workdir)
    process = subprocess.Popen(
        snakemake_command(workdir, "--cores", "8"),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    lake = workdir / "lake" / "ohlcv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if lake.exists() and sum(1 for _ in lake.rglob("bars.parquet")) >= 15:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    result = snakemake(workdir, "--cores", "8")  # nothing to unlock: the lake lock died with it
    assert result.returncode == 0, result.stderr[-3000:]
    assert lake_hashes(workdir) == lake_hashes(reference)
    with CheckpointStore(workdir / "lake") as store:
        assert store.integrity_check() == "ok"
        ledger = {(e.symbol, e.day): e for e in store.all_entries()}
    assert len(ledger) == len(bar_files(lake_hashes(workdir)))
    for (symbol, day), entry in ledger.items():
        assert entry.sha256 == file_sha256(partition_path(workdir / "lake", symbol, day))
    assert not list((workdir / "lake").rglob("*.tmp"))


def test_one_failing_symbol_does_not_stop_the_others(tmp_path: Path) -> None:
    workdir = tmp_path / "failing"
    faulty = {
        "demo": {"fail_symbols": {"MSFT": 500}},
        "alpaca": {"max_attempts": 2, "backoff_base": 0.01, "backoff_cap": 0.02},
    }
    write_config(workdir, **faulty, end=dt.date(2024, 2, 29))
    result = snakemake(workdir, "--cores", "8")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # One line for the failed job, its cause and that the next run tries again (MSFT's news
    # and corporate actions fail too: the simulator fails every request naming MSFT).
    failed = [line for line in output.splitlines() if line.startswith("[marketpipe] FAILED MSFT")]
    assert len(failed) == 1, output
    assert re.match(r"\[marketpipe\] FAILED MSFT 2024-0\d-\d\d\.\.2024-0\d-\d\d: ", failed[0])
    assert "HTTP 500: injected failure for MSFT" in failed[0]
    assert failed[0].endswith("(transient: the next run tries again)")
    assert "Cannot restore" not in output and "RuleException" not in output
    days = [day for day in DAYS if day <= dt.date(2024, 2, 29)]
    assert all(partition_path(workdir / "lake", "AAPL", day).exists() for day in days)
    assert not any(partition_path(workdir / "lake", "MSFT", day).exists() for day in days)
    log = workdir / "lake" / "_logs" / "fetch" / "2024_01" / "AAPL-MSFT.jsonl"
    assert "fetching them one by one" in log.read_text() and "HTTP 500" in log.read_text()
    write_config(workdir, end=dt.date(2024, 2, 29))  # the fault has cleared
    rerun = snakemake(workdir, "--cores", "8")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert all(partition_path(workdir / "lake", "MSFT", day).exists() for day in days)


def test_malformed_bars_land_in_quarantine_only(tmp_path: Path) -> None:
    workdir = tmp_path / "malformed"
    bad = {
        "high_below_low": 0.01,
        "negative_volume": 0.01,
        "nan": 0.01,
        "duplicate": 0.01,
        "out_of_order": 0.01,
    }
    write_config(workdir, demo={"bad_bars": bad}, end=dt.date(2024, 1, 12))
    result = snakemake(workdir, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    quarantine = ds.dataset(workdir / "lake" / "quarantine", partitioning="hive").to_table()
    assert quarantine.num_rows > 0
    assert {"high below low", "negative volume", "duplicate timestamp"} <= set(
        quarantine["reason"].to_pylist()
    )
    sessions = {s.date: s for s in trading_sessions(START, dt.date(2024, 1, 12))}
    for path in (workdir / "lake" / "ohlcv").rglob("bars.parquet"):
        day = dt.date.fromisoformat(pq.read_schema(path).metadata[b"marketpipe.day"].decode())
        check = validate_bars(pq.read_table(path), sessions[day], "sip", Timeframe.parse("1Min"))
        assert check.rejected.num_rows == 0, path


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good condition" in result.stdout + result.stderr


DATA_AREAS = ["_lake.json", "corporate_actions", "news", "ohlcv", "ohlcv_monthly", "securities"]


def test_a_local_lake_with_its_own_state_dir(reference: Path, tmp_path: Path) -> None:
    write_config(tmp_path, state_dir="state")
    first = snakemake(tmp_path, "--cores", "8")
    assert first.returncode == 0, first.stderr[-3000:]
    assert lake_hashes(tmp_path) == lake_hashes(reference)
    lake, state = tmp_path / "lake", tmp_path / "state"
    assert sorted(path.name for path in lake.iterdir()) == DATA_AREAS
    assert (state / "_state" / "checkpoints.sqlite").is_file()
    assert (state / "_runs" / "latest.json").is_file()
    again = snakemake(tmp_path, "--cores", "8")
    assert again.returncode == 0 and "Nothing to be done" in again.stderr, again.stderr[-3000:]
    for command in ("verify", "migrate", "status"):
        result = subprocess.run(
            marketpipe_command(command), cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in lake.iterdir()) == DATA_AREAS
