"""profiles/slurm on a real SLURM: a single-node cluster on this machine (slurmctld, slurmd,
slurmdbd with MariaDB, munged; deploy/slurm/local-cluster.sh), the official executor plugin
with its default status command (sacct), the lake on S3 (moto) and the vendor's keys
reaching the jobs in their environment, never by a command line.

Its own step in .ci/run (``pytest -m slurm``), after the suite: once SLURM's client is
installed, every Snakemake start asks ``scontrol show config`` (the plugin does, at import),
which waits up to 10 s whenever no controller answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from marketpipe.lake.objects import S3Store
from tests import workflow_support as support
from tests.chaos_trials import lake_hashes
from tests.s3_server import S3Server

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

LOCAL_CLUSTER = support.ROOT / "deploy" / "slurm" / "local-cluster.sh"
KEYS = {"APCA_API_KEY_ID": "PKSLURMKEY4d1c", "APCA_API_SECRET_KEY": "slurm-secret-9b7e"}
# The first status check after 3 s instead of the plugin's 40 (a test's jobs are short).
STATUS_OPTIONS = ("--slurm-init-seconds-before-status-checks", "3")


def _cluster_is_up() -> bool:
    return shutil.which("sinfo") is not None and (
        subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
        == "idle"
    )


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """A running single-node SLURM: started here (and stopped after) unless one runs."""
    if _cluster_is_up():
        yield
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        reason = "installing and starting SLURM needs root and apt-get (Debian)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the SLURM test, but {reason}", pytrace=False)
        pytest.skip(reason)
    started = subprocess.run(
        ["bash", str(LOCAL_CLUSTER), "up"], capture_output=True, text=True, timeout=600
    )
    assert started.returncode == 0, f"SLURM did not start: {started.stderr[-2000:]}"
    try:
        yield
    finally:
        subprocess.run(["bash", str(LOCAL_CLUSTER), "down"], capture_output=True, timeout=120)


def _config(workdir: Path, url: str, data_dir: str) -> None:
    shipped = yaml.safe_load((support.ROOT / "config" / "config.yaml").read_text())
    shipped |= {"vendor": "alpaca", "data_dir": data_dir}
    shipped["alpaca"] = {**shipped["alpaca"], "base_url": url, "budget_shares": 2}
    (workdir / "config.yaml").write_text(yaml.safe_dump(shipped))


def _slurm_command(workdir: Path) -> list[str]:
    return support.snakemake_command(
        workdir, "--workflow-profile", str(support.ROOT / "profiles" / "slurm"), *STATUS_OPTIONS
    )


def _run(workdir: Path, env: dict[str, str], command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
    )


def _jobs_of(workdir: Path, states: str = "all") -> list[str]:
    """The ids of the SLURM jobs submitted from ``workdir`` (their working directory)."""
    listed = subprocess.run(
        ["squeue", f"--states={states}", "--noheader", "--format=%i|%Z"],
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("|")[0] for line in listed.splitlines() if line.endswith(f"|{workdir}")]


def _job_records(jobs: list[str]) -> str:
    """What SLURM keeps of the jobs: ``scontrol show job``, accounting (``sacct``, with the
    submit line) and each job's batch script."""
    records = subprocess.run(
        ["scontrol", "show", "job", "--details"], capture_output=True, text=True
    ).stdout
    fields = "JobID,JobName,Account,WorkDir,SubmitLine,Comment,State"
    accounting = ["sacct", "-P", f"--format={fields}", "-j", ",".join(jobs)]
    records += subprocess.run(accounting, capture_output=True, text=True).stdout
    for job in jobs:
        script = ["scontrol", "write", "batch_script", job, "-"]
        records += subprocess.run(script, capture_output=True, text=True).stdout
    return records


def _wait_until_idle(workdir: Path) -> None:
    pause = threading.Event()
    for _ in range(1200):  # bounded: 2 minutes
        if not _jobs_of(workdir, "PENDING,RUNNING,COMPLETING"):
            return
        pause.wait(0.1)


def test_the_default_config_through_profiles_slurm_lands_exact_on_s3(
    slurm: None, s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    log_file = tmp_path / "vendor-requests.jsonl"
    strict = ("--key-id", KEYS["APCA_API_KEY_ID"], "--secret-key", KEYS["APCA_API_SECRET_KEY"])
    with support.simulator_process(log_file, *strict) as url:
        local, on_slurm, rerun = tmp_path / "local", tmp_path / "slurm", tmp_path / "rerun"
        for workdir in (local, on_slurm, rerun):
            workdir.mkdir()
        env = {**os.environ, **s3_api.environment, **KEYS}
        _config(local, url, "lake")
        reference = _run(local, env, support.snakemake_command(local, "--cores", "2"))
        assert reference.returncode == 0, reference.stderr[-3000:]
        uri = f"s3://{s3_api.create_bucket()}/lake"
        _config(on_slurm, url, uri)
        result = _run(on_slurm, env, _slurm_command(on_slurm))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        lake = S3Store(uri, s3_api.url)
        assert lake_hashes(lake) == lake_hashes(local / "lake")
        jobs = _jobs_of(on_slurm)
        assert len(jobs) >= 4, "the fetch and news jobs ran as SLURM jobs"
        again = _run(on_slurm, env, _slurm_command(on_slurm))
        assert "Nothing to be done" in again.stdout + again.stderr
        verify = _run(on_slurm, env, support.marketpipe_command("verify"))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # A controller killed mid-run (its SLURM jobs left running) and a plain rerun.
        second = f"s3://{s3_api.create_bucket()}/lake"
        second_lake = S3Store(second, s3_api.url)
        _config(rerun, url, second)
        running = support.kill_controller_mid_run(_slurm_command(rerun), rerun, env, second_lake)
        assert running, "the run ended before its controller could be killed"
        finished = _run(rerun, env, _slurm_command(rerun))
        _wait_until_idle(rerun)  # the killed controller's jobs too
        assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
        assert lake_hashes(second_lake) == lake_hashes(local / "lake")
        assert not [key for key in second_lake.list("_state") if "lease" in key]
    # The keys reached the jobs through the environment: never on a command line, in a
    # SLURM job record, a log, an output or a file.
    records = _job_records([*jobs, *_jobs_of(rerun)])
    outputs = "".join(r.stdout + r.stderr for r in (reference, result, again, verify, finished))
    for secret in (KEYS["APCA_API_SECRET_KEY"], s3_api.environment["AWS_SECRET_ACCESS_KEY"]):
        assert secret not in records + outputs
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert records.count("This script was created by sbatch") >= len(jobs)
