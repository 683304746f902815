"""Vendor selection: ``demo`` runs the bundled simulator inside the job; ``alpaca`` is real."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from marketpipe.connectors import AlpacaClient
from marketpipe.lake.ledger import STATE_DIR
from marketpipe.metrics import MetricsRecorder
from marketpipe.rate_budget import BUDGET_FILE, SharedRateLimiter
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
        rate_limit_window_seconds=settings.config.alpaca.rate_window_seconds,
        faults=FaultConfig(
            seed=demo.seed, rates=dict(demo.faults), fail_symbols=dict(demo.fail_symbols)
        ),
        bad_bars=dict(demo.bad_bars),
        listings=dict(demo.listings),
        unknown_symbols=frozenset(demo.unknown_symbols),
        outside_range_rate=demo.outside_range_rate,
        corrections=frozenset(
            (symbol, day) for symbol, days in demo.corrections.items() for day in days
        ),
        plan=demo.plan,
    )


def shared_rate_limiter(settings: WorkflowSettings) -> SharedRateLimiter:
    """The run-wide request budget every job of this lake shares."""
    alpaca = settings.config.alpaca
    return SharedRateLimiter(
        settings.data_dir / STATE_DIR / BUDGET_FILE,
        alpaca.requests_per_minute,
        window_seconds=alpaca.rate_window_seconds,
    )


@contextmanager
def open_client(
    settings: WorkflowSettings, metrics: MetricsRecorder | None = None
) -> Iterator[AlpacaClient]:
    """A client for the configured vendor, closed (and its simulator stopped) on exit.

    Every client of one lake spends the same request budget, across threads and processes.
    """
    options: dict[str, Any] = {"metrics": metrics} if metrics is not None else {}
    limiter = shared_rate_limiter(settings)
    try:
        if settings.config.vendor == "alpaca":
            config = alpaca_client_config(settings.config)
            with AlpacaClient(config, rate_limiter=limiter, **options) as client:
                yield client
            return
        log_path = simulator_log_path(settings.data_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with SimulatorServer(simulator_config(settings), log_path=log_path) as server:
            config = alpaca_client_config(
                settings.config,
                base_url=server.url,
                key_id=SecretStr("demo"),
                secret_key=SecretStr("demo"),
            )
            with AlpacaClient(config, rate_limiter=limiter, **options) as client:
                yield client
    finally:
        limiter.close()
