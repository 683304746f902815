"""Unattended operation: update under a run lock, freshness checks and alerts."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from marketpipe.commands.refresh import refresh_partitions
from marketpipe.commands.verify import verify_lake
from marketpipe.ingest.bars import ingest_days
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.reader import read_bars
from marketpipe.lake.run_lock import RunInProgress, RunLock
from marketpipe.lake.storage import DamagedFileError, file_sha256, partition_path
from marketpipe.observability.alerts import AlertPolicy, send_alert
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.streams import stream_settings
from marketpipe.workflow.vendors import open_client
from tests.webhook_receiver import webhook_receiver
from tests.workflow_support import (
    CONFIG,
    ROOT,
    copy_of,
    lake_hashes,
    simulator_process,
    snakemake,
    write_config,
)

SUMMARY = {
    "run_id": "20261124T213000Z-abc123",
    "status": "failed",
    "jobs": {
        "failed": 1,
        "failures": [{"job": "MSFT 2024-01", "symbol": "MSFT", "error": "HTTP 500"}],
    },
    "partitions": {"planned": 42, "present": 21, "missing": 21},
}


def test_an_alert_is_one_post_with_a_slack_text_line_and_the_summary() -> None:
    with webhook_receiver() as receiver:
        assert send_alert(AlertPolicy(SecretStr(receiver.url)), SUMMARY)
    (body,) = receiver.bodies
    assert body["summary"] == SUMMARY
    assert body["text"].startswith("MarketPipe run 20261124T213000Z-abc123 FAILED: 21/42")
    assert "MSFT: HTTP 500" in body["text"]


def test_a_failing_webhook_is_retried_a_few_times_then_logged_without_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps: list[float] = []
    with webhook_receiver("fail", token="XOXB-SECRET") as receiver:
        policy = AlertPolicy(SecretStr(receiver.url), attempts=3)
        assert not send_alert(policy, SUMMARY, sleep=sleeps.append)
    assert len(receiver.bodies) == 3 and len(sleeps) == 3
    assert "HTTP 500 (attempt 3)" in caplog.text
    assert "XOXB-SECRET" not in caplog.text and receiver.url not in caplog.text


def test_a_hanging_webhook_costs_at_most_its_deadline(caplog: pytest.LogCaptureFixture) -> None:
    with webhook_receiver("hang", token="XOXB-SECRET") as receiver:
        policy = AlertPolicy(SecretStr(receiver.url), deadline_seconds=1.0)
        started = time.monotonic()
        assert not send_alert(policy, SUMMARY)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 3.0, f"the alert held the run for {elapsed:.1f}s"
    assert "ReadTimeout" in caplog.text and "XOXB-SECRET" not in caplog.text


def test_the_run_lock_admits_one_holder_and_dies_with_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from marketpipe.lake.run_lock import RunLock; "
            "RunLock(sys.argv[1], 'test holder').acquire(); print('held', flush=True); "
            "time.sleep(120)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInProgress, match=rf"pid {holder.pid} on .*test holder since"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()  # as a power cut would: no cleanup runs
        holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()
    with RunLock(tmp_path, "next run") as lock:
        assert lock.held_here
        RunLock(tmp_path).acquire()  # this process holds it already: a no-op
    assert not lock.held_here


@pytest.mark.workflow
def test_one_alert_for_a_run_with_a_failing_symbol_and_no_secret_anywhere(
    tmp_path: Path,
) -> None:
    key_id, secret, token = "PKALERTPROBE77", "sk-alert-probe-Qw9-do-not-leak", "XOXB-77-hook"
    log_file = tmp_path / "requests.jsonl"
    with (
        webhook_receiver(token=token) as receiver,
        simulator_process(
            log_file,
            "--key-id",
            key_id,
            "--secret-key",
            secret,
            "--fail-symbol",
            "MSFT=500",
            "--rate-limit",
            "0",
        ) as url,
    ):
        workdir = tmp_path / "alerting"
        write_config(
            workdir,
            vendor="alpaca",
            end=dt.date(2024, 1, 31),
            alpaca={"base_url": url, "max_attempts": 2, "backoff_base": 0.005, "backoff_cap": 0.01},
        )
        env = {
            **os.environ,
            "APCA_API_KEY_ID": key_id,
            "APCA_API_SECRET_KEY": secret,
            "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url,
        }
        result = snakemake(workdir, "--cores", "2", env=env)
    assert result.returncode != 0
    (alert,) = receiver.bodies
    assert "FAILED" in alert["text"] and "MSFT" in alert["text"]
    assert alert["summary"]["jobs"]["failed"] >= 1
    output = result.stdout + result.stderr
    for probe in (key_id, secret, token, receiver.url):
        assert probe not in output
        for path in (p for p in workdir.rglob("*") if p.is_file()):
            assert probe.encode() not in path.read_bytes(), (probe, path)


def update_process(workdir: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``marketpipe update`` as a cron job would start it, in its own process group."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketpipe.cli",
            "update",
            "--config",
            "config.yaml",
            "--cores",
            "2",
            "--workflow",
            str(ROOT),
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def marketpipe(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "marketpipe.cli", *args, "--config", "config.yaml"]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)


@pytest.mark.workflow
def test_update_after_a_hard_kill_completes_with_no_other_command(
    reference: Path, tmp_path: Path
) -> None:
    write_config(tmp_path)
    process = update_process(tmp_path)
    lake = tmp_path / "lake" / "ohlcv"
    try:
        while process.poll() is None:  # wait for the lake to be partly written, then cut power
            if lake.exists() and sum(1 for _ in lake.rglob("bars.parquet")) >= 40:
                break
            time.sleep(0.005)
        assert process.poll() is None, "the run finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.communicate(timeout=60)
    locks = tmp_path / ".snakemake" / "locks"
    assert not locks.is_dir() or not any(locks.iterdir()), "no Snakemake lock to clear"
    again = marketpipe(tmp_path, "update", "--workflow", str(ROOT))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "complete: all 122 final partition(s)" in again.stdout
    assert lake_hashes(tmp_path) == lake_hashes(reference)
    assert marketpipe(tmp_path, "verify").returncode == 0
    # The freshness check a monitor runs: 0 now, 1 naming the partition once one is gone.
    assert marketpipe(tmp_path, "status", "--require-complete").returncode == 0
    partition_path(tmp_path / "lake", "MSFT", dt.date(2024, 2, 8)).unlink()
    stale = marketpipe(tmp_path, "status", "--require-complete")
    assert stale.returncode == 1
    assert "INCOMPLETE: 1 final partition(s) missing: MSFT 2024-02-08" in stale.stdout


@pytest.mark.workflow
def test_two_updates_at_once_one_runs_and_the_other_exits_at_once(
    reference: Path, tmp_path: Path
) -> None:
    # The run that gets the lock holds it while its success alert waits at a gate, so the
    # other one is refused whatever the timing; then the gate opens.
    write_config(tmp_path, alerts={"on_success": True, "deadline_seconds": 60})
    with webhook_receiver("gate") as receiver:
        env = {**os.environ, "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url}
        first, second = update_process(tmp_path, env), update_process(tmp_path, env)
        processes = {first.pid: first, second.pid: second}
        waiting = dict(processes)
        while len(waiting) == 2:
            for pid, process in list(waiting.items()):
                if process.poll() is not None:
                    del waiting[pid]
            time.sleep(0.01)
        (refused,) = [p for p in processes.values() if p.returncode is not None]
        _, refused_err = refused.communicate(timeout=60)
        receiver.release.set()
        (runner,) = waiting.values()
        _, runner_err = runner.communicate(timeout=600)
    assert refused.returncode == 75, refused_err
    assert f"another run is in progress (pid {runner.pid} on " in refused_err
    assert "this run did nothing" in refused_err
    assert runner.returncode == 0, runner_err[-3000:]
    assert receiver.bodies and "succeeded" in receiver.bodies[0]["text"]
    assert lake_hashes(tmp_path) == lake_hashes(reference)
    assert marketpipe(tmp_path, "verify").returncode == 0


def test_the_schedule_recipes_run_a_valid_update_command() -> None:
    from marketpipe.cli import build_parser

    deploy = Path(__file__).resolve().parents[1] / "deploy"
    cron_line = next(
        line
        for line in (deploy / "marketpipe.cron").read_text().splitlines()
        if line and not line.startswith(("#", "CRON_TZ"))
    )
    command = cron_line.split("&&", 1)[1].split(">>")[0].split()
    service = (deploy / "marketpipe-update.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    for argv in (command, exec_start.removeprefix("ExecStart=").split()):
        assert argv[0].endswith("/marketpipe")
        args = build_parser().parse_args(argv[1:])
        assert args.command == "update" and args.set == ["end=today"]
    assert "SuccessExitStatus=75" in service
    assert (
        "OnCalendar=Mon..Fri 21:05 America/New_York"
        in (deploy / "marketpipe-update.timer").read_text()
    )


@pytest.mark.workflow
def test_refresh_replaces_exactly_the_partition_the_vendor_changed(tmp_path: Path) -> None:
    lake_config = {
        "symbols": ["AAPL", "MSFT"],
        "start": dt.date(2024, 1, 2),
        "end": dt.date(2024, 1, 12),
    }
    write_config(tmp_path, **lake_config)
    assert snakemake(tmp_path, "--cores", "2").returncode == 0
    before = lake_hashes(tmp_path)
    corrected = {"corrections": {"MSFT": [dt.date(2024, 1, 9)]}}
    write_config(tmp_path, **lake_config, demo=corrected)
    result = marketpipe(
        tmp_path,
        "refresh",
        "--start",
        "2024-01-02",
        "--end",
        "2024-01-12",
        "--reason",
        "late cancel",
    )
    assert result.returncode == 0, result.stderr
    assert "1 partition(s) replaced, 17 unchanged" in result.stdout
    after = lake_hashes(tmp_path)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"ohlcv/symbol=MSFT/year=2024/month=01/day=09/bars.parquet"}
    with CheckpointStore(tmp_path / "lake") as store:
        (replacement,) = store.replacements()
        assert store.ledger("MSFT")[dt.date(2024, 1, 9)].sha256 == after[next(iter(changed))]
    assert (replacement.symbol, replacement.day, replacement.reason) == (
        "MSFT",
        dt.date(2024, 1, 9),
        "late cancel",
    )
    assert (replacement.old_sha256, replacement.new_sha256) == (
        before[next(iter(changed))],
        after[next(iter(changed))],
    )
    assert marketpipe(tmp_path, "verify").returncode == 0
    status = json.loads(marketpipe(tmp_path, "status", "--json").stdout)
    assert {row["symbol"]: row["refreshed"] for row in status["config"]["symbols"]} == {
        "AAPL": 0,
        "MSFT": 1,
    }
    # Reruns stay byte-stable: nothing changed, nothing is written or fetched.
    again = marketpipe(tmp_path, "refresh", "--start", "2024-01-02", "--end", "2024-01-12")
    assert "0 partition(s) replaced, 18 unchanged" in again.stdout
    assert lake_hashes(tmp_path) == after
    dry = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_an_interrupted_refresh_is_finished_by_running_it_again(tmp_path: Path) -> None:
    def settings(lake: Path, **extra: object) -> WorkflowSettings:
        return load_settings(
            {
                "symbols": ["AAPL"],
                "start": "2024-01-02",
                "end": "2024-01-04",
                "data_dir": str(lake),
                **extra,
            }
        )

    interrupted, finished = tmp_path / "interrupted", tmp_path / "finished"
    plain = settings(interrupted)
    with CheckpointStore(interrupted) as store, open_client(plain) as client:
        ingest_days(client, store, interrupted, ["AAPL"], plain.final_days, stream_settings(plain))
    shutil.copytree(interrupted, finished)
    corrections = {"demo": {"corrections": {"AAPL": ["2024-01-03"]}}}
    first, last = dt.date(2024, 1, 2), dt.date(2024, 1, 4)
    refresh_partitions(settings(finished, **corrections), ["AAPL"], first, last)
    day = dt.date(2024, 1, 3)
    # A crash after the new file was in place, before the ledger said so.
    new_bytes = partition_path(finished, "AAPL", day).read_bytes()
    partition_path(interrupted, "AAPL", day).write_bytes(new_bytes)
    corrected = settings(interrupted, **corrections)
    assert verify_lake(corrected).problems, "the ledger disagrees with the file"
    result = refresh_partitions(corrected, ["AAPL"], first, last)
    assert result.replaced == [] and result.unchanged == 3
    assert partition_path(interrupted, "AAPL", day).read_bytes() == new_bytes
    assert verify_lake(corrected).problems == []
    with CheckpointStore(interrupted) as store:
        (caught_up,) = store.replacements()
    assert caught_up.reason == "refresh requested (ledger caught up)"
    assert caught_up.new_sha256 == file_sha256(partition_path(interrupted, "AAPL", day))


@pytest.mark.workflow
def test_a_webhook_that_never_answers_delays_the_run_end_by_its_deadline_at_most(
    tmp_path: Path,
) -> None:
    write_config(
        tmp_path,
        symbols=["AAPL"],
        end=dt.date(2024, 1, 5),
        alerts={"on_success": True, "deadline_seconds": 2},
    )
    with webhook_receiver("hang") as receiver:
        env = {**os.environ, "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url}
        result = snakemake(tmp_path, "--cores", "2", env=env)
        ended = dt.datetime.now(dt.UTC)
    assert result.returncode == 0, result.stderr[-3000:]
    assert receiver.bodies, "the alert was attempted"
    assert "the alert webhook could not be reached" in result.stderr
    summary = json.loads((tmp_path / "lake" / "_runs" / "latest.json").read_text())
    waited = (ended - dt.datetime.fromisoformat(summary["finished_at"])).total_seconds()
    assert waited < 2 + 5, f"the run ended {waited:.1f}s after its summary"


@pytest.mark.workflow
def test_two_lakes_from_one_directory_and_a_run_on_a_busy_lake(tmp_path: Path) -> None:
    # Lake A's update holds its lake while its success alert waits at a gate. Meanwhile lake
    # B's update runs from the same directory to completion, and a plain snakemake with more
    # days for lake A stops at once with MarketPipe's message (never advice to --unlock).
    small = {"symbols": ["AAPL"], "end": "2024-01-12"}
    gate = {"alerts": {"on_success": True, "deadline_seconds": 60}}
    for name, extra in (("a", gate), ("b", {})):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump({**CONFIG, **small, "data_dir": f"lake-{name}", **extra})
        )
    update = [sys.executable, "-m", "marketpipe.cli", "update", "--workflow", str(ROOT)]
    plain_snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    with webhook_receiver("gate") as receiver:
        env = {**os.environ, "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url}
        first = subprocess.Popen(
            [*update, "--config", "a.yaml"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.arrived.wait(300), "lake A's run never reached its alert"
            other = subprocess.run(
                [*update, "--config", "b.yaml"], cwd=tmp_path, capture_output=True, text=True
            )
            busy = subprocess.run(
                [
                    *plain_snakemake,
                    "--configfile",
                    "a.yaml",
                    "--cores",
                    "1",
                    "--config",
                    "end=2024-01-19",
                ],
                cwd=tmp_path,
                capture_output=True,
                text=True,
            )
        finally:
            receiver.release.set()
            _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err[-3000:]
    assert other.returncode == 0, other.stderr[-3000:]
    assert busy.returncode == 75, busy.stderr[-3000:]
    assert f"another run is in progress (pid {first.pid} on " in busy.stderr
    assert "This run did nothing" in busy.stderr and "--unlock" not in busy.stderr
    assert (tmp_path / "lake-a" / "ohlcv").is_dir() and (tmp_path / "lake-b" / "ohlcv").is_dir()


@pytest.mark.workflow
def test_a_2000_partition_update_prints_a_short_log(tmp_path: Path) -> None:
    # What a cron log keeps: the scope, progress lines and the verdict, not every job's
    # output paths (progress lines come every 15 s; this run may be quicker).
    symbols = ["AAPL", "MSFT", "SPY", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD", "INTC"]
    symbols += ["IBM", "ORCL", "CSCO", "QCOM", "TXN", "AVGO", "ADBE", "CRM", "NFLX", "PYPL"]
    config = {**CONFIG, "symbols": symbols, "end": "2024-05-31", "timeframe": "1Hour"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = marketpipe(tmp_path, "update", "--workflow", str(ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "complete: all 2100 final partition(s)" in result.stdout
    assert len(result.stdout) + len(result.stderr) < 20_000
    assert "2,100 of 2,100 partitions to fetch" in result.stderr
    assert "partitions: 2,100/2,100 present" in result.stdout
    assert "localrule" not in result.stderr and "output:" not in result.stderr
    status = subprocess.run(
        f"{sys.executable} -m marketpipe.cli status --config config.yaml | head -1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.stdout.startswith("lake: lake holds demo") and "Traceback" not in status.stderr


@pytest.mark.workflow
def test_damaged_files_are_refused_then_repaired_by_one_update(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    truncated = partition_path(lake, "AAPL", dt.date(2024, 1, 10))
    flipped = partition_path(lake, "MSFT", dt.date(2024, 1, 11))
    with open(truncated, "r+b") as handle:  # in place, as a tool or a bad disk would
        handle.truncate(100)
    with open(flipped, "r+b") as handle:
        handle.seek(300)
        byte = handle.read(1)
        handle.seek(300)
        handle.write(bytes([byte[0] ^ 0xFF]))
    # A range that cuts the month reads day files (a whole month would come from its month
    # file, built from the files' bytes before the damage).
    with pytest.raises(DamagedFileError) as refused:
        read_bars(["AAPL", "MSFT"], dt.date(2024, 1, 2), dt.date(2024, 1, 30), data_dir=lake)
    assert set(refused.value.damaged) == {
        f"{lake}/ohlcv/symbol=AAPL/year=2024/month=01/day=10/bars.parquet",
        f"{lake}/ohlcv/symbol=MSFT/year=2024/month=01/day=11/bars.parquet",
    }
    assert "marketpipe update" in str(refused.value)
    status = marketpipe(workdir, "status")
    assert "damaged: 2 file(s)" in status.stdout, status.stdout
    update = marketpipe(workdir, "update", "--workflow", str(ROOT))
    assert update.returncode == 0, update.stderr[-3000:]
    assert "repaired 2: AAPL 2024-01-10" in update.stdout and "MSFT 2024-01-11" in update.stdout
    assert lake_hashes(workdir) == lake_hashes(reference)
    kept = sorted(path.name for path in (lake / "_damaged").rglob("*") if path.is_file())
    assert kept == ["bars.parquet", "bars.parquet", "bars.parquet.reason", "bars.parquet.reason"]
    assert read_bars("AAPL", dt.date(2024, 1, 10), dt.date(2024, 1, 10), data_dir=lake).num_rows
    assert marketpipe(workdir, "verify").returncode == 0
