"""Every failed `marketpipe update` alerts exactly once, naming the cause, also when it
fails before Snakemake schedules anything (a bad config, an unreachable lake, a held lake)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from marketpipe.lake.lease import ObjectLease
from marketpipe.lake.objects import S3Store
from marketpipe.workflow.run import EXIT_BUSY
from tests.s3_server import S3Server
from tests.webhook_receiver import webhook_receiver
from tests.workflow_support import CONFIG, ROOT, marketpipe_command

pytestmark = pytest.mark.workflow

SMALL = {**CONFIG, "symbols": ["AAPL"], "end": "2024-01-05"}


def _update(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        marketpipe_command("update", "--workflow", str(ROOT)),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _alerts_of(workdir: Path, config: dict[str, object], extra_env: dict[str, str]):
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    with webhook_receiver() as receiver:
        env = {**os.environ, **extra_env, "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url}
        result = _update(workdir, env)
    return result, [body["text"] for body in receiver.bodies]


def test_a_broken_config_alerts_once(tmp_path: Path) -> None:
    result, alerts = _alerts_of(tmp_path, {**SMALL, "symbols": ["AAPL!"]}, {})
    assert result.returncode == 2
    assert len(alerts) == 1, alerts
    assert "FAILED before any job ran" in alerts[0] and "config key symbols" in alerts[0]
    assert "Traceback" not in result.stderr


def test_an_unreachable_lake_alerts_once(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens there, every connection is refused.
    unreachable = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "k"}
    unreachable |= {"AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    result, alerts = _alerts_of(tmp_path, {**SMALL, "data_dir": "s3://bucket/lake"}, unreachable)
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(alerts) == 1, alerts
    assert "cannot reach the lake s3://bucket/lake" in alerts[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_lake_held_too_long_alerts_once(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    store = S3Store(f"s3://{s3_api.create_bucket()}/lake")
    other_machine = ObjectLease(store, "marketpipe update elsewhere", heartbeat=False)
    other_machine.acquire()
    config = {**SMALL, "data_dir": store.uri, "alerts": {"busy_minutes": 0}}
    try:
        result, alerts = _alerts_of(tmp_path, config, s3_api.environment)
    finally:
        other_machine.release()
    assert result.returncode == EXIT_BUSY, result.stderr[-3000:]
    assert len(alerts) == 1, alerts
    assert "marketpipe update elsewhere" in alerts[0] and "alerts.busy_minutes" in alerts[0]


def test_a_short_overlap_does_not_alert(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    store = S3Store(f"s3://{s3_api.create_bucket()}/lake")
    other_machine = ObjectLease(store, "yesterday's run, finishing", heartbeat=False)
    other_machine.acquire()
    try:
        result, alerts = _alerts_of(tmp_path, {**SMALL, "data_dir": store.uri}, s3_api.environment)
    finally:
        other_machine.release()
    assert result.returncode == EXIT_BUSY
    assert alerts == []


def test_a_workflow_that_fails_to_plan_alerts_once_with_its_error(tmp_path: Path) -> None:
    # A workflow directory whose Snakefile cannot be parsed (a botched edit, say).
    workflow = tmp_path / "workflow-copy"
    (workflow / "workflow" / "rules").mkdir(parents=True)
    (workflow / "Snakefile").write_text("rule all:\n    input: undefined_name_here\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(SMALL))
    with webhook_receiver() as receiver:
        env = {**os.environ, "MARKETPIPE_ALERT_WEBHOOK_URL": receiver.url}
        result = subprocess.run(
            marketpipe_command("update", "--workflow", str(workflow)),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    alerts = [body["text"] for body in receiver.bodies]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(alerts) == 1, alerts
    assert "failed before running any job" in alerts[0] and "undefined_name_here" in alerts[0]


def test_a_run_that_fails_in_the_scheduler_still_alerts_once(tmp_path: Path) -> None:
    config = {**SMALL, "demo": {"fail_symbols": {"AAPL": 403}}}
    result, alerts = _alerts_of(tmp_path, config, {})
    assert result.returncode == 1
    assert len(alerts) == 1, alerts
    assert "FAILED" in alerts[0] and "before any job ran" not in alerts[0]
