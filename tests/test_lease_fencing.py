"""A controller that loses its S3 lake's lease stops writing, and the next one finishes.

Real processes against moto's S3 server: controller A's requests are told apart from
controller B's by their access key id, and the server's log says when each request came.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from marketpipe.lake.lease import LEASE_KEY, SAFETY_MARGIN
from marketpipe.lake.objects import S3Store
from marketpipe.lake.storage import LAKE_DIR
from marketpipe.workflow.run import EXIT_BUSY, EXIT_LEASE_LOST
from tests import workflow_support as support
from tests.chaos_trials import lake_hashes
from tests.s3_server import S3Request, S3Server

pytestmark = pytest.mark.workflow

LEASE_SECONDS = 6.0
IN_FLIGHT = 0.5  # seconds a request already sent may take to reach the server
CONFIG = {
    "symbols": ["AAPL", "MSFT"],
    "start": "2024-01-02",
    "end": "2024-02-29",
    "symbols_per_job": 1,
    # About one request a second: the run lasts long enough to lose its lease mid-way.
    "alpaca": {"requests_per_minute": 2, "rate_window_seconds": 2},
    "s3": {"lease_seconds": LEASE_SECONDS, "renew_seconds": 1},
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The bytes an uninterrupted local run writes."""
    workdir = tmp_path_factory.mktemp("reference")
    config = {**CONFIG, "data_dir": "lake", "alpaca": {}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = support.snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    return lake_hashes(workdir / "lake")


def _controller(tmp_path: Path, name: str, uri: str) -> tuple[Path, dict[str, str]]:
    """A working directory and environment of its own: another machine, another key."""
    workdir = tmp_path / name
    workdir.mkdir()
    config = {**CONFIG, "data_dir": uri, "state_dir": str(workdir / "state")}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir, {"AWS_ACCESS_KEY_ID": f"controller-{name}"}


def _start(workdir: Path, env: dict[str, str], s3_api: S3Server) -> subprocess.Popen[str]:
    return subprocess.Popen(
        support.snakemake_command(workdir, "--cores", "2"),
        cwd=workdir,
        env={**os.environ, **s3_api.environment, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_until_publishing(process: subprocess.Popen[str], lake: S3Store) -> None:
    for _ in range(30_000):  # bounded: until the run has published part of the lake
        if lake.any(LAKE_DIR) or process.poll() is not None:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before its lease could be lost"


def _controller_a_publishing(
    s3_api: S3Server, tmp_path: Path
) -> tuple[str, S3Store, subprocess.Popen[str]]:
    """A new bucket's lake, and controller A's run once it has published part of it."""
    uri = f"s3://{s3_api.create_bucket()}/lake"
    lake = S3Store(uri, s3_api.url)
    workdir, env = _controller(tmp_path, "a", uri)
    first = _start(workdir, env, s3_api)
    _wait_until_publishing(first, lake)
    return uri, lake, first


def _take_over(tmp_path: Path, uri: str, s3_api: S3Server) -> None:
    """Controller B starts again until it may take the lease over (each attempt is a whole
    run; the lease must look unchanged for LEASE_SECONDS to B), then finishes the lake."""
    workdir, env = _controller(tmp_path, "b", uri)
    for _ in range(40):
        attempt = _start(workdir, env, s3_api)
        _, errors = attempt.communicate(timeout=300)
        if attempt.returncode == 0:
            return
        assert attempt.returncode == EXIT_BUSY, errors[-3000:]
        assert "counts as abandoned after 6 s" in errors
    pytest.fail("controller B never took the lease over")


def _writes(s3_api: S3Server, access_key: str) -> list[S3Request]:
    """What a controller wrote to the lake: PUTs and DELETEs other than of its lease that the
    server carried out (a create-only PUT refused with 412 wrote nothing)."""
    return [
        request
        for request in s3_api.requests
        if request.access_key == access_key
        and request.method in ("PUT", "DELETE", "POST")
        and not request.path.endswith(LEASE_KEY)
        and 200 <= request.status < 300
    ]


def test_a_run_whose_lease_cannot_be_renewed_stops_writing(
    s3_api: S3Server, reference: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    uri, lake, first = _controller_a_publishing(s3_api, tmp_path)
    # From now on every renewal of A's lease fails (503): a network partition.
    failing_since = time.monotonic()
    s3_api.refuse = lambda request: (
        request.access_key == "controller-a"
        and request.method == "PUT"
        and request.path.endswith(LEASE_KEY)
    )
    try:
        _, errors = first.communicate(timeout=300)
    finally:
        s3_api.refuse = None
    assert first.returncode == EXIT_LEASE_LOST, errors[-3000:]
    assert "lost the lease" in errors and "It wrote nothing after that" in errors
    assert any(request.refused for request in s3_api.requests)
    # A's lease was valid at most until its last renewal before the fault plus 90% of the
    # window; no write of A's reached the lake after that (but one already on its way).
    expired = failing_since + LEASE_SECONDS * (1 - SAFETY_MARGIN)
    writes = _writes(s3_api, "controller-a")
    late = [request for request in writes if request.at > expired + IN_FLIGHT]
    assert late == []
    _take_over(tmp_path, uri, s3_api)
    assert lake_hashes(lake) == reference
    assert not lake.exists(LEASE_KEY)


def test_a_paused_controller_resumed_after_a_takeover_writes_nothing(
    s3_api: S3Server, reference: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_api.point_here(monkeypatch)
    uri, lake, first = _controller_a_publishing(s3_api, tmp_path)
    os.killpg(first.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        _take_over(tmp_path, uri, s3_api)
    finally:
        resumed = time.monotonic()
        os.killpg(first.pid, signal.SIGCONT)
        _, errors = first.communicate(timeout=300)
    assert first.returncode == EXIT_LEASE_LOST, errors[-3000:]
    # Nothing after the resume; while stopped, only what was already on its way may arrive.
    arrivals = [request.at for request in _writes(s3_api, "controller-a") if request.at > stopped]
    assert [at for at in arrivals if at > resumed] == [], errors[-5000:]
    assert all(at - stopped < IN_FLIGHT for at in arrivals), [at - stopped for at in arrivals]
    assert lake_hashes(lake) == reference
    assert not lake.exists(LEASE_KEY)
