"""Jobs on a cluster: Snakemake's cluster-generic executor, each job its own detached process
with state of its own (as on nodes that share no filesystem), the lake on S3 (moto)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketpipe.lake.identity import IDENTITY_KEY
from marketpipe.lake.objects import S3Store
from marketpipe.lake.storage import LAKE_DIR
from marketpipe.simulator import read_request_log
from tests import workflow_support as support
from tests.chaos_trials import lake_hashes
from tests.s3_server import S3Server

pytestmark = pytest.mark.workflow

SUBMIT = support.ROOT / "deploy" / "cluster" / "submit-local.sh"


def cluster_command(workdir: Path, *args: str) -> list[str]:
    return support.snakemake_command(
        workdir,
        "--workflow-profile",
        str(support.ROOT / "profiles" / "cluster-local"),
        "--cluster-generic-submit-cmd",
        str(SUBMIT),
        *args,
    )


def run_cluster(
    workdir: Path, env: dict[str, str], *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """The workflow through the cluster-local profile, run to its end, output captured."""
    return subprocess.run(
        cluster_command(workdir, *args),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cluster_environment(s3_api: S3Server, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        **s3_api.environment,
        "MARKETPIPE_CLUSTER_LOGS": str(workdir / "cluster-logs"),
        "MARKETPIPE_JOB_STATE_ROOT": str(workdir / "nodes"),
    }


def wait_for_jobs(workdir: Path) -> None:
    """Wait (bounded) until every job process the submit script started has ended."""
    pids_file = workdir / "cluster-logs" / "pids"
    pids = [int(line) for line in pids_file.read_text().split()] if pids_file.exists() else []
    gone = threading.Event()
    for _ in range(6000):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        gone.wait(0.05)
    raise AssertionError(f"cluster jobs still running: {alive}")


def test_a_cluster_run_writes_a_local_runs_bytes(
    s3_api: S3Server, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    support.write_config(tmp_path, data_dir=uri, symbols_per_job=1)
    env = cluster_environment(s3_api, tmp_path)
    result = run_cluster(tmp_path, env, timeout=600)
    wait_for_jobs(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lake = S3Store(uri, s3_api.url)
    assert lake_hashes(lake) == lake_hashes(reference / "lake")
    # Every job kept its state apart, and the controller's ledger was rebuilt from the lake;
    # the run summary still counts every job's work (records collected from the bucket).
    assert len(list((tmp_path / "nodes").iterdir())) == 6 + 3  # bar jobs, news jobs by month
    state = tmp_path / ".marketpipe" / uri.removeprefix("s3://")
    summary = json.loads((state / "_runs" / "latest.json").read_text())
    # ... and the controller's own: the corporate-actions check, the security master and the
    # news recheck.
    assert summary["jobs"]["total"] == 6 + 3 + 3 and summary["jobs"]["failed"] == 0
    assert summary["partitions"]["published"] == 2 * len(support.DAYS)
    assert summary["requests"] > 0
    assert lake.list("_state/job-records") == []
    verify = subprocess.run(
        [*support.marketpipe_command("verify")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    dry = run_cluster(tmp_path, env, "-n", timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    secret = s3_api.environment["AWS_SECRET_ACCESS_KEY"]
    for output in (result, verify, dry):
        assert secret not in output.stdout + output.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_one_request_budget_holds_across_cluster_jobs(s3_api: S3Server, tmp_path: Path) -> None:
    budget, window = 6, 2.0
    log_file = tmp_path / "requests.jsonl"
    with support.simulator_process(
        log_file, "--rate-limit", str(budget), "--rate-window", str(window)
    ) as url:
        support.write_config(
            tmp_path,
            vendor="alpaca",
            end=dt.date(2024, 1, 31),
            symbols_per_job=1,
            data_dir=f"s3://{s3_api.create_bucket()}/lake",
            alpaca={
                "base_url": url,
                "requests_per_minute": budget,
                "budget_shares": 3,
                "rate_window_seconds": window,
                "page_size": 2500,
            },
        )
        env = {**cluster_environment(s3_api, tmp_path), **support.ALPACA_KEYS}
        result = run_cluster(tmp_path, env, timeout=600)
        wait_for_jobs(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    served = read_request_log(log_file)
    assert len(served) > 2 * budget, "enough requests for the budget to matter"
    assert [entry.status for entry in served].count(429) == 0
    assert support.max_in_any_window([entry.time for entry in served], window) <= budget


def test_a_controller_killed_mid_run_and_restarted_ends_identical(
    s3_api: S3Server, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    lake = S3Store(uri, s3_api.url)
    support.write_config(tmp_path, data_dir=uri, symbols_per_job=1)
    env = cluster_environment(s3_api, tmp_path)
    running = support.kill_controller_mid_run(cluster_command(tmp_path), tmp_path, env, lake)
    assert running, "the run ended before the controller could be killed"
    assert 0 < len(lake.list(LAKE_DIR)) < 2 * len(support.DAYS)
    rerun = run_cluster(tmp_path, env, timeout=600)
    wait_for_jobs(tmp_path)  # the first controller's orphans too
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert lake_hashes(lake) == lake_hashes(reference / "lake")
    for key in lake.list(LAKE_DIR):  # whole objects only, at the keys a local run writes
        table = pq.read_table(pa.BufferReader(lake.get(key)))
        assert table.num_rows == pq.read_metadata(reference / "lake" / key).num_rows, key
    # Besides the data: no lease (both controllers' runs ended) and nothing of the rerun's
    # state; only the killed run's plan (its orphaned jobs may have been reading it) and
    # the records of its orphans that ended after the rerun (the next run collects them).
    leftovers = [
        key
        for key in lake.list("")
        if not key.startswith(
            ("ohlcv/", "ohlcv_monthly/", "corporate_actions/", "news/", "securities/")
        )
        and key != IDENTITY_KEY  # what the lake holds: data too
    ]
    (killed_plan,) = [key for key in leftovers if key.startswith("_state/plans/")]
    killed_run = Path(killed_plan).stem
    assert all(killed_run in key for key in leftovers), leftovers
