"""Vendor selection: ``demo`` runs the bundled simulator inside the job; ``alpaca`` is real."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from marketpipe.checkpoints import STATE_DIR
from marketpipe.connectors import AlpacaClient, AlpacaConfig
from marketpipe.metrics import MetricsRecorder
from marketpipe.simulator import FaultConfig, SimulatorConfig, SimulatorServer
from marketpipe.workflow.settings import WorkflowSettings, alpaca_client_config

SIMULATOR_LOG = "simulator-requests.jsonl"


def simulator_log_path(data_dir: Path) -> Path:
    """Where ``vendor: demo`` jobs log the simulator requests they made."""
    return data_dir / STATE_DIR / SIMULATOR_LOG


def simulator_config(settings: WorkflowSettings) -> SimulatorConfig:
    """The simulator behaviour a ``vendor: demo`` run asks for."""
    demo = settings.config.demo
    return SimulatorConfig(
        seed=demo.seed,
        rate_limit_per_minute=demo.rate_limit_per_minute,
        faults=FaultConfig(
            seed=demo.seed, rates=dict(demo.faults), fail_symbols=dict(demo.fail_symbols)
        ),
        bad_bars=dict(demo.bad_bars),
        listings=dict(demo.listings),
    )


@contextmanager
def open_client(
    settings: WorkflowSettings, metrics: MetricsRecorder | None = None
) -> Iterator[AlpacaClient]:
    """A client for the configured vendor, closed (and its simulator stopped) on exit."""
    options = {"metrics": metrics} if metrics is not None else {}
    if settings.config.vendor == "alpaca":
        with AlpacaClient(alpaca_client_config(settings.config), **options) as client:
            yield client
        return
    log_path = simulator_log_path(settings.data_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    alpaca = settings.config.alpaca
    with SimulatorServer(simulator_config(settings), log_path=log_path) as server:
        config = AlpacaConfig(
            base_url=server.url,
            key_id=SecretStr("demo"),
            secret_key=SecretStr("demo"),
            requests_per_minute=alpaca.requests_per_minute,
            max_attempts=alpaca.max_attempts,
            backoff_base=alpaca.backoff_base,
            backoff_cap=max(alpaca.backoff_cap, alpaca.backoff_base),
        )
        with AlpacaClient(config, **options) as client:
            yield client
