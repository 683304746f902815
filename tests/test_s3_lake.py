"""The lake on S3: the shipped config against a real S3 API on loopback (moto's server).

Every partition becomes one object with the bytes a local run writes; planning lists the
bucket (about one request per 1,000 keys) instead of asking about each partition.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import marketpipe
from marketpipe.chaos import CRASH_POINTS
from marketpipe.commands.plan import build_plan
from marketpipe.lake.identity import IDENTITY_KEY
from marketpipe.lake.lease import LEASE_KEY
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import MONTHLY_DIR, month_key
from marketpipe.lake.objects import S3Store
from marketpipe.lake.read_plan import plan_read
from marketpipe.lake.securities import SECURITIES_KEY
from marketpipe.lake.storage import LAKE_DIR, partition_key
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.workflow.config_loading import load_settings
from tests import workflow_support as support
from tests.chaos_trials import SMALL_RUN_ARRIVALS, lake_hashes, run_crash_trial
from tests.s3_server import AWS_ENVIRONMENT, S3Request, S3Server
from tests.workflow_support import snakemake

pytestmark = pytest.mark.workflow

CONFIG = {"symbols": ["AAPL", "MSFT", "SPY"], "start": "2024-01-02", "end": "2024-02-29"}
# Any request for a host other than loopback would go to this dead proxy and fail.
LOOPBACK_ONLY = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


def environment(s3_api: S3Server) -> dict[str, str]:
    return {**os.environ, **s3_api.environment, **LOOPBACK_ONLY}


def write_config(workdir: Path, data_dir: str, **changes: object) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(
        yaml.safe_dump({**CONFIG, "data_dir": data_dir, **changes})
    )


def object_hashes(store: S3Store) -> dict[str, str]:
    """sha256 of every bar, month, corporate-actions and news object, as ``lake_hashes``."""
    return lake_hashes(store)


@pytest.fixture(scope="module")
def local_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("local")
    write_config(workdir, "lake")
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="module")
def s3_lake(s3_api: S3Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("s3")
    uri = f"s3://{s3_api.create_bucket()}/lake"
    write_config(workdir, uri)
    result = snakemake(workdir, "--cores", "2", env=environment(s3_api))
    assert result.returncode == 0, result.stderr[-3000:]
    assert AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    return workdir, uri


def listings(requests: list[S3Request]) -> list[S3Request]:
    """The LIST requests among ``requests``; anything else but one GET of the lake's
    identity and the reads of its security master fails the test."""
    found = [request for request in requests if "list-type=2" in request.query]
    others = [
        request
        for request in requests
        if request not in found and not request.path.endswith(f"/{SECURITIES_KEY}")
    ]
    assert len(others) <= 1 and all(r.path.endswith(f"/{IDENTITY_KEY}") for r in others), others
    return found


def store_of(s3_api: S3Server, uri: str) -> S3Store:
    return S3Store(uri, s3_api.url)


def test_every_partition_is_an_object_with_a_local_runs_bytes(
    s3_api: S3Server, s3_lake: tuple[Path, str], local_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    workdir, uri = s3_lake
    objects = object_hashes(store_of(s3_api, uri))
    local = lake_hashes(local_lake / "lake")
    assert len(objects) == 3 * 41 + 3 * 2 + 3 + 59  # bars, month files, actions, news days
    assert objects == local
    assert not (workdir / "lake").exists()  # nothing of the lake landed on local disk
    state = workdir / ".marketpipe" / uri.removeprefix("s3://")
    assert (state / "_state" / "checkpoints.sqlite").is_file()
    secret = AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"].encode()
    for path in workdir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path


def test_a_second_dry_run_lists_the_bucket_and_has_nothing_to_do(
    s3_api: S3Server, s3_lake: tuple[Path, str]
) -> None:
    workdir, _ = s3_lake
    before = len(s3_api.requests)
    dry = snakemake(workdir, "-n", env=environment(s3_api))
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
    requests = s3_api.requests[before:]
    # The lake's identity and its security master (which days each security was listed),
    # then one listing each of the bars, the month files and the news (a request per 1,000
    # keys).
    assert requests[0].path.endswith(f"/{IDENTITY_KEY}")
    master = [request for request in requests if request.path.endswith(f"/{SECURITIES_KEY}")]
    assert len(master) == 2  # is it there, and its bytes
    assert len(listings(requests)) == 3
    assert len(requests) == 1 + len(master) + 3


def test_verify_status_and_reads_work_on_the_bucket(
    s3_api: S3Server, s3_lake: tuple[Path, str], local_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, uri = s3_lake
    env = environment(s3_api)
    export = (
        "export",
        "--start",
        "2024-02-07",
        "--end",
        "2024-02-13",
        "--symbols",
        "AAPL",
        "--adjustment",
        "all",
        "--output",
        str(workdir / "aapl.parquet"),
    )
    for command in (("verify",), ("status",), ("report",), export):
        result = subprocess.run(
            [sys.executable, "-m", "marketpipe.cli", *command, "--config", "config.yaml"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        if command == ("verify",):
            assert (
                "verified 123 partition file(s), 3 corporate-actions file(s), "
                "59 news file(s) and 6 month file(s): OK" in (result.stdout)
            )
    s3_api.point_here(monkeypatch)
    first, last = dt.date(2024, 1, 2), dt.date(2024, 2, 29)
    exported = pq.read_table(workdir / "aapl.parquet")
    adjusted = marketpipe.read_bars(
        "AAPL",
        dt.date(2024, 2, 7),
        dt.date(2024, 2, 13),
        data_dir=local_lake / "lake",
        adjustment="all",
    )
    assert exported.equals(adjusted)
    for adjustment in ("raw", "all"):
        remote = marketpipe.read_bars(
            CONFIG["symbols"], first, last, data_dir=uri, adjustment=adjustment
        )
        local = marketpipe.read_bars(
            CONFIG["symbols"], first, last, adjustment=adjustment, data_dir=local_lake / "lake"
        )
        assert remote.equals(local)
    lazy = marketpipe.scan_bars(CONFIG["symbols"], first, last, data_dir=uri)
    assert lazy.count_rows() == local.num_rows
    # Both whole months come from the bucket's month files; with one gone, from its days.
    bucket = store_of(s3_api, uri)
    planned = plan_read(CONFIG["symbols"], first, last, bucket, "error").keys
    assert sorted(k for k in planned if k.startswith(MONTHLY_DIR)) == sorted(
        month_key(symbol, (2024, month)) for symbol in CONFIG["symbols"] for month in (1, 2)
    )
    removed = month_key("AAPL", (2024, 2))
    kept = bucket.get(removed)
    bucket.delete(removed)
    try:
        raw = marketpipe.read_bars(CONFIG["symbols"], first, last, data_dir=local_lake / "lake")
        assert marketpipe.read_bars(CONFIG["symbols"], first, last, data_dir=uri).equals(raw)
        assert len(plan_read(CONFIG["symbols"], first, last, bucket, "error").keys) == 5 + 20
    finally:
        bucket.put(removed, kept)
    bad = store_of(s3_api, uri)
    key = partition_key("MSFT", dt.date(2024, 1, 5))
    original = bad.get(key)
    bad.put(key, original[:-20])
    try:
        broken = subprocess.run(
            [sys.executable, "-m", "marketpipe.cli", "verify", "--config", "config.yaml"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        bad.put(key, original)
    assert broken.returncode == 1
    assert f"BAD {uri}/{key}: content differs from the ledger" in broken.stdout


def test_planning_a_large_lake_takes_one_list_request_per_thousand_keys(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    bucket = s3_api.create_bucket()
    uri = f"s3://{bucket}/big"
    symbols = [f"S{index:03d}" for index in range(41)]
    days = [
        session.date for session in trading_sessions(dt.date(2024, 1, 2), dt.date(2024, 12, 31))
    ]
    keys = [partition_key(symbol, day) for symbol in symbols for day in days]
    missing = {keys[7], keys[5000]}
    s3_api.put_directly(bucket, [f"big/{key}" for key in keys if key not in missing], b"PAR1")
    identity = {"vendor": "demo", "feed": "sip", "timeframe": "1Min", "adjustment": "raw"}
    s3_api.put_directly(bucket, [f"big/{IDENTITY_KEY}"], json.dumps(identity).encode())
    assert len(keys) >= 10_000
    monkeypatch.chdir(tmp_path)
    config = {
        **CONFIG,
        "symbols": symbols,
        "start": days[0],
        "end": days[-1],
        "data_dir": uri,
        "corporate_actions": {"fetch": False},
    }
    before = len(s3_api.requests)
    plan = build_plan(load_settings(config))
    requests = listings(s3_api.requests[before:])  # and one GET of the lake's identity
    assert plan.missing_partitions == 2
    assert 0 < len(requests) <= math.ceil(len(keys) / 1_000) + 1
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**config, "start": str(days[0]), "end": str(days[-1])})
    )
    before = len(s3_api.requests)
    dry = snakemake(tmp_path, "-n", env=environment(s3_api))
    assert dry.returncode == 0, dry.stderr[-2000:]
    requests = listings(s3_api.requests[before:])
    # The bars, plus one listing each of the news days and the month files.
    assert 0 < len(requests) <= math.ceil(len(keys) / 1_000) + 2
    # The jobs' outputs are markers, so the run names the missing partitions itself.
    named = f"missing: S000 {days[7]}, S019 {days[5000 - 19 * len(days)]}"
    assert named in dry.stderr, dry.stderr[-2000:]


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_at_a_random_moment_then_a_rerun_is_byte_identical(
    trial: int,
    s3_api: S3Server,
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(f"s3-crash-trial-{trial}")
    point = rng.choice(CRASH_POINTS)
    nth = rng.randint(1, SMALL_RUN_ARRIVALS[point])
    s3_api.point_here(monkeypatch, **LOOPBACK_ONLY)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    workdir = tmp_path / "trial"
    support.write_config(workdir, data_dir=uri)
    lake = store_of(s3_api, uri)
    result = run_crash_trial(
        command=support.snakemake_command(workdir, "--cores", "8"),
        workdir=workdir,
        data_dir=workdir / ".marketpipe" / uri.removeprefix("s3://"),
        point=point,
        nth=nth,
        reference=lake_hashes(reference / "lake"),
        lake=lake,
    )
    assert result.crashed, f"the run reached {point} fewer than {nth} times"
    assert result.passed, result
    for key in lake.list(LAKE_DIR):  # every object is whole: all the rows a clean run wrote
        table = pq.read_table(pa.BufferReader(lake.get(key)))
        assert table.num_rows == pq.read_metadata(reference / "lake" / key).num_rows, key
    assert not lake.exists(LEASE_KEY), "the rerun must release the lake's lease"


def test_the_ledger_is_rebuilt_from_the_lake(reference: Path, tmp_path: Path) -> None:
    workdir = support.copy_of(reference, tmp_path)
    state = workdir / "lake" / "_state" / "checkpoints.sqlite"
    with CheckpointStore(workdir / "lake") as store:
        before = {(entry.symbol, entry.day): entry for entry in store.all_entries()}
    for path in state.parent.glob("checkpoints.sqlite*"):
        path.unlink()
    result = subprocess.run(
        support.marketpipe_command("reindex"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(before)} partition(s) recorded, 0 forgotten" in result.stdout
    with CheckpointStore(workdir / "lake") as store:
        after = {(entry.symbol, entry.day): entry for entry in store.all_entries()}
    assert after == {key: dataclasses.replace(entry, requests=0) for key, entry in before.items()}
    verify = subprocess.run(
        support.marketpipe_command("verify"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout
    with CheckpointStore(workdir / "lake") as store:
        actions = store.actions_entries()
    assert sorted(actions) == ["AAPL", "MSFT"]  # coverage unknown: the next check asks anew
    assert actions["AAPL"].covered_from > actions["AAPL"].covered_through


def _lease_test_config(workdir: Path, uri: str, **changes: object) -> None:
    base = {"symbols": ["AAPL", "MSFT"], "start": "2024-01-02", "end": "2024-01-31"}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump({**base, "data_dir": uri, **changes}))


def _second_machine_runs_at_once(s3_api: S3Server, uri: str, tmp_path: Path) -> None:
    other = tmp_path / "other-machine"
    _lease_test_config(other, uri, state_dir=str(other / "state"))
    rerun = snakemake(other, "--cores", "2", env=environment(s3_api))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "in progress" not in rerun.stderr


@pytest.mark.parametrize("ending", ["success", "failure"])
def test_a_plain_run_releases_the_lease_however_it_ends(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    s3_api.point_here(monkeypatch)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    lake = store_of(s3_api, uri)
    failing = {"demo": {"fail_symbols": {"MSFT": 403}}} if ending == "failure" else {}
    _lease_test_config(tmp_path / "first", uri, **failing)
    first = snakemake(tmp_path / "first", "--cores", "2", env=environment(s3_api))
    assert (first.returncode == 0) == (ending == "success"), first.stderr[-3000:]
    assert not lake.exists(LEASE_KEY)
    _second_machine_runs_at_once(s3_api, uri, tmp_path)
    assert not lake.exists(LEASE_KEY)


def test_a_ctrl_c_run_releases_the_lease(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    uri = f"s3://{s3_api.create_bucket()}/lake"
    lake = store_of(s3_api, uri)
    workdir = tmp_path / "first"
    # One request per job and a budget of 2 per 5 s: the run waits, and is interrupted there.
    budget = {"requests_per_minute": 2, "rate_window_seconds": 5}
    _lease_test_config(workdir, uri, symbols_per_job=1, alpaca=budget)
    process = subprocess.Popen(
        support.snakemake_command(workdir, "--cores", "2"),
        cwd=workdir,
        env=environment(s3_api),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(6000):  # bounded: until the run holds the lake and has published
            if (lake.exists(LEASE_KEY) and lake.any(LAKE_DIR)) or process.poll() is not None:
                break
            threading.Event().wait(0.01)
        assert process.poll() is None, "the run ended before it could be interrupted"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        output, errors = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode != 0
    assert not lake.exists(LEASE_KEY), errors[-3000:]
    # The summary says what happened (running thread jobs may still finish first).
    assert re.search(r"MarketPipe run \S+: interrupted", output), output
    _second_machine_runs_at_once(s3_api, uri, tmp_path)


def test_a_damaged_object_is_repaired_as_its_error_says(
    s3_api: S3Server, s3_lake: tuple[Path, str], local_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    workdir, uri = s3_lake
    store = store_of(s3_api, uri)
    before = object_hashes(store)
    key = partition_key("MSFT", dt.date(2024, 2, 6))
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0xFF
    bucket = uri.removeprefix("s3://").split("/")[0]
    s3_api.put_directly(bucket, [f"lake/{key}"], bytes(data))
    with pytest.raises(marketpipe.DamagedFileError) as damaged:
        marketpipe.read_bars("MSFT", dt.date(2024, 2, 6), dt.date(2024, 2, 6), data_dir=uri)
    advice = str(damaged.value)
    assert "Repair on S3: `marketpipe refresh --symbols SYMBOL --start DAY --end DAY`" in advice
    refresh = subprocess.run(
        [
            *support.marketpipe_command("refresh"),
            *("--symbols", "MSFT", "--start", "2024-02-06", "--end", "2024-02-06"),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(s3_api),
    )
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert object_hashes(store)[key] == before[key] == lake_hashes(local_lake / "lake")[key]
    # The refresh removed the month file over the day; the next run builds it again.
    again = snakemake(workdir, "--cores", "2", env=environment(s3_api))
    assert again.returncode == 0, again.stderr[-3000:]
    assert object_hashes(store) == before
