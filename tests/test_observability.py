"""What a user sees after a run: JSON logs, the run summary, and plan/status/verify/report."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from marketpipe.cli import main
from marketpipe.commands.common import load_command_settings
from marketpipe.commands.plan import build_plan
from marketpipe.lake.actions import read_actions
from marketpipe.lake.storage import partition_path
from marketpipe.observability.logs import RUN_ID_VARIABLE
from marketpipe.observability.progress import with_progress
from tests.workflow_support import (
    DAYS,
    ROOT,
    SYMBOLS,
    copy_of,
    missing_partitions_named,
    request_log,
    snakemake,
    write_config,
)

pytestmark = pytest.mark.workflow

FAULT_CAUSES = {
    "429": "429",
    "500": "5xx",
    "503": "5xx",
    "reset": "connection",
    "truncate": "bad_body",
    "invalid_json": "bad_body",
}


def _json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_job_logs_are_json_lines_with_run_id_and_context(reference: Path) -> None:
    summary = json.loads((reference / "lake" / "_runs" / "latest.json").read_text())
    run_id = summary["run_id"]
    job_logs = sorted((reference / "lake" / "_logs" / "fetch").rglob("*.jsonl"))
    # One job per month: both symbols miss the same days, so they share a stream.
    assert [path.relative_to(path.parents[1]).as_posix() for path in job_logs] == [
        f"2024_0{month}/AAPL-MSFT.jsonl" for month in (1, 2, 3)
    ]
    events = collections.Counter()
    for path in job_logs:
        for record in _json_lines(path):
            assert {"timestamp", "level", "event", "run_id", "message"} <= set(record)
            assert record["run_id"] == run_id
            assert record["symbol"] in ("AAPL", "MSFT", "AAPL,MSFT")
            assert record["month"] == path.parent.name.replace("_", "-")
            events[record["event"]] += 1
            if record["event"] == "request":
                fields = {"vendor", "endpoint", "status", "attempt", "latency_ms", "bytes", "rows"}
                assert fields <= set(record)
    assert {"job.start", "request", "partition.published", "job.end", "progress"} <= set(events)
    run_log = _json_lines(reference / "lake" / "_logs" / "runs" / f"{run_id}.jsonl")
    assert [r["event"] for r in run_log] == ["run.start", "run.end"]
    assert summary["status"] == "success"
    assert summary["partitions"]["present"] == summary["partitions"]["planned"] == 2 * len(DAYS)
    endpoints = summary["endpoints"]
    assert set(endpoints) == {
        "alpaca:stocks/bars",
        "alpaca:corporate-actions",
        "alpaca:news",
        "alpaca:assets",
    }
    assert endpoints["alpaca:corporate-actions"]["requests"] == 1
    total = sum(stats["requests"] for stats in endpoints.values())
    assert total == summary["requests"] == len(request_log(reference))
    endpoint = endpoints["alpaca:stocks/bars"]
    assert (
        endpoint["latency_ms"]["p50"]
        <= endpoint["latency_ms"]["p95"]
        <= endpoint["latency_ms"]["max"]
    )


def test_summary_retry_counts_match_the_faults_the_simulator_served(tmp_path: Path) -> None:
    rates = {
        "429": 0.08,
        "500": 0.08,
        "503": 0.05,
        "reset": 0.05,
        "truncate": 0.05,
        "invalid_json": 0.05,
    }
    write_config(
        tmp_path,
        end=dt.date(2024, 2, 29),
        demo={"faults": rates, "seed": 4},
        alpaca={
            "max_attempts": 12,
            "backoff_base": 0.005,
            "backoff_cap": 0.02,
            "rate_window_seconds": 0.5,  # a bare 429 waits out the window
        },
    )
    result = snakemake(tmp_path, "--cores", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MarketPipe run" in result.stdout and "retries:" in result.stdout
    served = collections.Counter()
    for entry in request_log(tmp_path):
        if entry.fault:
            served[FAULT_CAUSES[entry.fault]] += 1
    summary = json.loads((tmp_path / "lake" / "_runs" / "latest.json").read_text())
    assert sum(served.values()) > 0
    assert summary["retries"] == dict(served)
    assert summary["requests"] == len(request_log(tmp_path))


def test_no_secret_reaches_any_file_of_a_real_alpaca_run(tmp_path: Path) -> None:
    key_id, secret = "PKSECRETPROBE0042", "sk-probe-Zq8vN3-do-not-leak"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "marketpipe.simulator",
            "--port",
            "0",
            "--key-id",
            key_id,
            "--secret-key",
            secret,
            "--fault",
            "500=0.2",
            "--fault",
            "reset=0.1",
            "--rate-limit",
            "0",
            "--bad-bars",
            "duplicate=0.01",
            "--bad-bars",
            "negative_volume=0.01",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip().rsplit(" ", 1)[-1] if server.stdout else ""
        workdir = tmp_path / "alpaca"
        write_config(
            workdir,
            vendor="alpaca",
            end=dt.date(2024, 1, 31),
            alpaca={
                "base_url": url,
                "max_attempts": 10,
                "backoff_base": 0.005,
                "backoff_cap": 0.02,
            },
        )
        env = {**os.environ, "APCA_API_KEY_ID": key_id, "APCA_API_SECRET_KEY": secret}
        result = snakemake(workdir, "--cores", "8", env=env)
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout:
            server.stdout.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((workdir / "lake" / "quarantine").rglob("*.parquet")), "quarantine was written"
    logs = list((workdir / "lake" / "_logs").rglob("*.jsonl"))
    assert any('"event": "request.retry"' in path.read_text() for path in logs)
    files = [path for path in workdir.rglob("*") if path.is_file()]
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and key_id.encode() not in data, path
    assert secret not in result.stdout + result.stderr
    assert key_id not in result.stdout + result.stderr


def test_plan_agrees_with_a_dry_run_and_estimates_requests(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = tmp_path / "fresh"
    write_config(fresh)
    monkeypatch.chdir(fresh)
    estimate = build_plan(load_command_settings(Path("config.yaml"), [])).estimated_requests
    assert snakemake(fresh, "--cores", "8").returncode == 0
    actual = len(request_log(fresh))
    # The plan says: plus one request per new cash dividend (the close before its ex-date).
    dividends = sum(
        read_actions(fresh / "lake", symbol)["type"].to_pylist().count("cash_dividend")
        for symbol in SYMBOLS
    )
    assert dividends == 2
    assert abs(estimate + dividends - actual) <= 0.1 * actual, (estimate, dividends, actual)

    workdir = copy_of(reference, tmp_path)
    deleted = [("AAPL", DAYS[3]), ("AAPL", DAYS[4]), ("MSFT", DAYS[40]), ("MSFT", DAYS[-1])]
    for symbol, day in deleted:
        partition_path(workdir / "lake", symbol, day).unlink()
    monkeypatch.chdir(workdir)
    plan = build_plan(load_command_settings(Path("config.yaml"), []))
    dry = snakemake(workdir, "-n")
    named = set(missing_partitions_named(dry.stdout))
    assert named == {str(partition_path("lake", s, d)) for s, d in deleted}
    assert plan.missing_partitions == len(named)
    assert sorted((job.symbols, job.month) for job in plan.jobs) == [
        (("AAPL",), DAYS[3].strftime("%Y-%m")),
        (("MSFT",), DAYS[40].strftime("%Y-%m")),
        (("MSFT",), DAYS[-1].strftime("%Y-%m")),
    ]
    assert plan.estimated_requests == 3


def test_verify_names_each_bad_file(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir = copy_of(reference, tmp_path)
    monkeypatch.chdir(workdir)
    assert main(["verify", "--config", "config.yaml"]) == 0
    verified = (
        f"verified {2 * len(DAYS)} partition file(s), 2 corporate-actions file(s), "
        "87 news file(s) and 6 month file(s): OK"
    )
    assert verified in capsys.readouterr().out
    flipped = partition_path("lake", "AAPL", DAYS[5])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated = partition_path("lake", "MSFT", DAYS[7])
    truncated.write_bytes(truncated.read_bytes()[:500])
    moved = partition_path("lake", "AAPL", DAYS[9])
    shutil.copyfile(partition_path("lake", "AAPL", DAYS[8]), moved)
    assert main(["verify", "--config", "config.yaml"]) == 1
    lines = capsys.readouterr().out.splitlines()
    bad = {line.split(": ", 1)[0].removeprefix("BAD ") for line in lines if line.startswith("BAD")}
    assert bad == {str(flipped), str(truncated), str(moved)}
    moved_note = f"its metadata names AAPL {DAYS[8]}, not the path's AAPL {DAYS[9]}"
    assert any(moved_note in line for line in lines)
    assert any("a page failed its checksum (bits changed on disk)" in line for line in lines)
    assert any("not a whole Parquet file (truncated or overwritten)" in line for line in lines)
    assert lines[-1].endswith("problem(s)")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("CI"):
        pytest.fail("CI must have Chromium (.ci/run installs Debian's chromium)")
    pytest.skip("Chromium is not installed")


def test_report_png_opens_and_html_renders_in_headless_chromium(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = copy_of(reference, tmp_path)
    partition_path(workdir / "lake", "MSFT", DAYS[10]).unlink()  # a visible gap
    monkeypatch.chdir(workdir)
    assert main(["report", "--config", "config.yaml", "--output", "out"]) == 0
    picture = matplotlib.image.imread(workdir / "out" / "coverage.png")
    assert picture.shape[0] > 150 and picture.shape[1] > 500
    reds = (picture[..., 0] > 0.8) & (picture[..., 1] < 0.25) & (picture[..., 2] < 0.25)
    assert reds.any(), "the missing partition is drawn in red"
    page = (workdir / "out" / "coverage.html").read_text()
    assert "data:image/png;base64," in page and "MSFT" in page and "Latest run" in page
    shot = tmp_path / "screenshot.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,1100",
            (workdir / "out" / "coverage.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rendered = matplotlib.image.imread(shot)
    assert rendered.shape[:2] == (1100, 1280)
    assert rendered[..., :3].std() > 0.05, "the screenshot is not blank"


@pytest.mark.parametrize("command", ["plan", "status", "verify", "report"])
def test_commands_have_help_and_clear_errors(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    monkeypatch.chdir(tmp_path)
    assert main([command, "--config", "absent.yaml"]) == 2
    assert "config file absent.yaml not found" in capsys.readouterr().err
    write_config(tmp_path, symbols=["AAPL!"])
    assert main([command, "--config", "config.yaml"]) == 2
    assert "config key symbols.0" in capsys.readouterr().err
    write_config(tmp_path)
    if command != "plan":
        assert main([command, "--config", "config.yaml"]) == 2
        assert "no lake at lake/" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_line_is_live_on_a_terminal_and_silent_elsewhere() -> None:
    ticks = iter(float(second) for second in range(100))
    terminal = _Terminal()
    items = list(
        with_progress(range(4), 4, "verifying", stream=terminal, clock=lambda: next(ticks))
    )
    assert items == [0, 1, 2, 3]
    shown = terminal.getvalue()
    assert "\rverifying: 1/4 (25%)" in shown and "verifying: 4/4 (100%)" in shown
    assert "s left" in shown and shown.endswith("\r")  # the line is cleared at the end
    log = io.StringIO()  # a cron log or a pipe
    assert list(with_progress(range(4), 4, "verifying", stream=log)) == [0, 1, 2, 3]
    assert log.getvalue() == ""


def test_every_run_has_an_id_of_its_own_never_an_inherited_one(tmp_path: Path) -> None:
    # An id left in the environment (by an earlier run, or any in-process call) must not
    # make a new run share it: its plan, markers and records are filed under that id.
    write_config(tmp_path, symbols=["AAPL"], end="2024-01-03")
    stale = "20200101T000000Z-aaaaaa"
    env = {**os.environ, RUN_ID_VARIABLE: stale}
    first = snakemake(tmp_path, "--cores", "1", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    # `marketpipe update` twice in one process (a day more each): two runs, two ids.
    twice = (
        "import sys; from pathlib import Path; from marketpipe.commands.update import update; "
        f"sys.exit(max(update(Path('config.yaml'), [f'end={{end}}'], 1, Path({str(ROOT)!r})) "
        "for end in ('2024-01-04', '2024-01-05')))"
    )
    second = subprocess.run(
        [sys.executable, "-c", twice], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr[-3000:]
    runs = sorted(path.stem for path in (tmp_path / "lake" / "_logs" / "runs").glob("*.jsonl"))
    assert len(runs) == 3 and stale not in runs, runs
