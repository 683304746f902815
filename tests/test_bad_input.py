"""Bad input stops before anything runs, with a message naming the key and what to do."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import marketpipe
from marketpipe.lake.reader import NoLakeError
from marketpipe.lake.storage import LAKE_DIR
from marketpipe.simulator import read_request_log
from tests.s3_server import S3Server
from tests.workflow_support import (
    CONFIG,
    ROOT,
    marketpipe_command,
    simulator_process,
    snakemake_command,
)

BAD_DATA_DIRS = [
    (
        "s3:/bucket/lake",
        "'s3:/bucket/lake' is not an S3 location; did you mean 's3://bucket/lake'?",
    ),
    ("a-file", "a-file is a file, not a directory"),
    ("a-file/lake", "a-file/lake cannot be created: a-file is a file"),
    ("/proc/marketpipe-lake", "/proc/marketpipe-lake cannot be created or written"),
    ("gs://bucket/lake", "'gs://bucket/lake': gs:// is not supported"),
]


def _prepare(workdir: Path, data_dir: str) -> None:
    (workdir / "a-file").write_text("not a directory\n")
    (workdir / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": data_dir}))


def _entries(workdir: Path) -> set[str]:
    return {str(path.relative_to(workdir)) for path in workdir.rglob("*")}


@pytest.mark.parametrize(("data_dir", "message"), BAD_DATA_DIRS)
def test_a_bad_data_dir_is_named_before_anything_runs(
    tmp_path: Path, data_dir: str, message: str
) -> None:
    _prepare(tmp_path, data_dir)
    before = _entries(tmp_path)
    for command in ("plan", "status", "verify"):
        result = subprocess.run(
            marketpipe_command(command), cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"config key data_dir: {message}" in result.stderr
        assert "Traceback" not in result.stderr
    assert _entries(tmp_path) == before  # nothing created


@pytest.mark.workflow
def test_snakemake_names_a_bad_data_dir_too(tmp_path: Path) -> None:
    _prepare(tmp_path, "s3:/bucket/lake")
    before = _entries(tmp_path)
    result = subprocess.run(
        snakemake_command(tmp_path, "-n"), cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "config key data_dir: 's3:/bucket/lake' is not an S3 location" in output
    created = _entries(tmp_path) - before
    assert all(entry.startswith(".snakemake") for entry in created), created


def test_a_home_relative_data_dir_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": "~/lake"}))
    (tmp_path / "home").mkdir()
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    result = subprocess.run(
        marketpipe_command("plan"), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "~").exists()


def test_a_missing_bucket_is_named(
    s3_api: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    config = {**CONFIG, "data_dir": "s3://no-such-bucket/lake"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, **s3_api.environment}
    for command in ("plan", "status"):
        result = subprocess.run(
            marketpipe_command(command), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert result.returncode == 2, result.stderr
        assert "config key data_dir: the bucket 'no-such-bucket'" in result.stderr
        assert "Traceback" not in result.stderr


def test_read_bars_says_when_a_directory_is_no_lake(tmp_path: Path) -> None:
    (tmp_path / "dat").mkdir()
    with pytest.raises(NoLakeError, match=f"no lake at .*dat: it holds no {LAKE_DIR}/"):
        marketpipe.read_bars(
            "AAPL", dt.date(2024, 1, 2), dt.date(2024, 1, 5), data_dir=tmp_path / "dat"
        )
    with pytest.raises(NoLakeError):
        marketpipe.read_bars("AAPL", "2024-01-02", "2024-01-05", data_dir=tmp_path / "nowhere")


@pytest.mark.workflow
def test_a_wrong_key_is_explained_once_and_not_asked_again(tmp_path: Path) -> None:
    # The real API answers a bad key with nginx's HTML 401 page; the simulator does too.
    log_file = tmp_path / "requests.jsonl"
    wrong = {"APCA_API_KEY_ID": "PKWRONGKEY123", "APCA_API_SECRET_KEY": "wrong-secret-456"}
    with simulator_process(log_file, "--key-id", "PKREAL", "--secret-key", "right") as url:
        config = {**CONFIG, "vendor": "alpaca", "alpaca": {"base_url": url}}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        result = subprocess.run(
            marketpipe_command("update", "--workflow", str(ROOT)),
            cwd=tmp_path,
            env={**os.environ, **wrong},
            capture_output=True,
            text=True,
            timeout=300,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert (
        "alpaca refused the API credentials (an HTML page ('401 Authorization Required')" in output
    )
    assert "check APCA_API_KEY_ID and APCA_API_SECRET_KEY (APCA_API_KEY_ID is set" in output
    assert "<html" not in output.lower() and "nginx" not in output
    for secret in wrong.values():
        assert secret not in output
    served = read_request_log(log_file)
    assert 1 <= len(served) <= 3, [entry.path for entry in served]
    # One line per data set (bars, corporate actions, news), each naming all its jobs.
    summary_lines = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(summary_lines) <= 3, "\n".join(summary_lines)
