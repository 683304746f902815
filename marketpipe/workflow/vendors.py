"""Vendor selection: ``demo`` runs the bundled simulator inside the job; ``alpaca`` is real."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from marketpipe.connectors import (
    AlpacaClient,
    CorporateActionsClient,
    NewsClient,
    PolygonClient,
    PolygonQuotesClient,
    PolygonTradesClient,
)
from marketpipe.connectors.assets import AlpacaAssetsClient
from marketpipe.connectors.flat_files import FlatFilesClient
from marketpipe.connectors.polygon_actions import PolygonCorporateActionsClient
from marketpipe.connectors.polygon_news import PolygonNewsClient
from marketpipe.connectors.rate_budget import BUDGET_FILE, SharedRateLimiter
from marketpipe.connectors.rate_limit import EvenShareRateLimiter
from marketpipe.connectors.ticks import AlpacaQuotesClient, AlpacaTradesClient, TicksClient
from marketpipe.ingest.bars import IngestReport, StreamSettings, ingest_days
from marketpipe.ingest.flat_files import ingest_flat_files
from marketpipe.lake.ledger import STATE_DIR, CheckpointStore
from marketpipe.lake.objects import LakeStore
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.simulator import SimulatorServer
from marketpipe.workflow.settings import (
    WorkflowSettings,
    alpaca_client_config,
    flat_files_config,
    polygon_client_config,
)

SIMULATOR_LOG = "simulator-requests.jsonl"


def simulator_log_path(data_dir: Path) -> Path:
    """Where ``vendor: demo`` jobs log the simulator requests they made."""
    return data_dir / STATE_DIR / SIMULATOR_LOG


def shared_rate_limiter(settings: WorkflowSettings) -> SharedRateLimiter | EvenShareRateLimiter:
    """The request budget of one job: the run-wide budget every job of this lake shares
    through a file, or with ``budget_shares`` above 1 (jobs on machines that share no
    state), this job's fixed share of it."""
    budget = settings.vendor_section
    shares = budget.budget_shares
    if shares > 1:
        return EvenShareRateLimiter(
            max(1, budget.requests_per_minute // shares),
            window_seconds=budget.rate_window_seconds,
        )
    return SharedRateLimiter(
        settings.state_dir / STATE_DIR / BUDGET_FILE,
        budget.requests_per_minute,
        window_seconds=budget.rate_window_seconds,
    )


@dataclass(frozen=True)
class VendorClients:
    """The configured vendor's clients: bars, corporate actions, news, trades and quotes;
    one budget."""

    bars: AlpacaClient | PolygonClient
    corporate_actions: CorporateActionsClient | PolygonCorporateActionsClient
    news: NewsClient | PolygonNewsClient | None = None
    assets: AlpacaAssetsClient | None = None  # Alpaca's trading API (None for Polygon)
    flat_files: FlatFilesClient | None = None  # Polygon's bulk files (polygon.flat_files)
    trades: TicksClient | None = None
    quotes: TicksClient | None = None

    def ticks(self, kind: str) -> TicksClient:
        """The vendor's trades or quotes client."""
        client = self.trades if kind == "trades" else self.quotes
        if client is None:
            raise ValueError(f"{kind} are not fetched from this vendor; set {kind}.fetch: false")
        return client

    def ingest_bars(
        self,
        store: CheckpointStore,
        lake: LakeStore | Path,
        symbols: Sequence[str],
        days: list[dt.date],
        stream: StreamSettings,
        report: IngestReport | None = None,
        *,
        now: dt.datetime | None = None,
        adopt: bool = True,
    ) -> IngestReport:
        """Publish ``symbols``' missing ``days``: from Polygon's flat files when they are on
        (the REST API for the days without a file yet), else from the bars API."""
        if self.flat_files is not None:
            return ingest_flat_files(
                self.flat_files, self.bars, store, lake, symbols, days, stream, report, now, adopt
            )
        return ingest_days(self.bars, store, lake, symbols, days, stream, report, now, adopt)


@contextmanager
def open_clients(
    settings: WorkflowSettings, metrics: MetricsRecorder | None = None
) -> Iterator[VendorClients]:
    """The vendor's clients, closed (and the demo simulator stopped) on exit.

    Every client of one lake spends the same request budget, across threads and processes.
    """
    options: dict[str, Any] = {"metrics": metrics} if metrics is not None else {}
    with ExitStack() as stack:
        limiter = shared_rate_limiter(settings)
        stack.callback(limiter.close)
        if settings.config.vendor == "polygon":
            polygon = polygon_client_config(settings.config)
            files = None
            if settings.reads_flat_files:
                files = stack.enter_context(
                    FlatFilesClient(flat_files_config(settings.config), **options)
                )
            yield VendorClients(
                bars=stack.enter_context(PolygonClient(polygon, rate_limiter=limiter, **options)),
                corporate_actions=stack.enter_context(
                    PolygonCorporateActionsClient(polygon, rate_limiter=limiter, **options)
                ),
                news=stack.enter_context(
                    PolygonNewsClient(polygon, rate_limiter=limiter, **options)
                ),
                flat_files=files,
                trades=stack.enter_context(
                    PolygonTradesClient(polygon, rate_limiter=limiter, **options)
                ),
                quotes=stack.enter_context(
                    PolygonQuotesClient(polygon, rate_limiter=limiter, **options)
                ),
            )
            return
        if settings.config.vendor == "alpaca":
            config = alpaca_client_config(settings.config)
        else:
            log_path = simulator_log_path(settings.state_dir)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            server = stack.enter_context(
                SimulatorServer(
                    settings.config.demo.simulator_config(
                        settings.config.alpaca.rate_window_seconds, settings.config.symbols
                    ),
                    log_path=log_path,
                )
            )
            config = alpaca_client_config(
                settings.config,
                base_url=server.url,
                trading_url=server.url,
                key_id=SecretStr("demo"),
                secret_key=SecretStr("demo"),
            )
        bars = stack.enter_context(AlpacaClient(config, rate_limiter=limiter, **options))
        assets = stack.enter_context(AlpacaAssetsClient(config, rate_limiter=limiter, **options))
        bars.use_assets(assets.asset)
        yield VendorClients(
            bars=bars,
            corporate_actions=stack.enter_context(
                CorporateActionsClient(config, rate_limiter=limiter, **options)
            ),
            news=stack.enter_context(NewsClient(config, rate_limiter=limiter, **options)),
            assets=assets,
            trades=stack.enter_context(AlpacaTradesClient(config, rate_limiter=limiter, **options)),
            quotes=stack.enter_context(AlpacaQuotesClient(config, rate_limiter=limiter, **options)),
        )


@contextmanager
def open_client(
    settings: WorkflowSettings, metrics: MetricsRecorder | None = None
) -> Iterator[AlpacaClient | PolygonClient]:
    """The vendor's bars client (see :func:`open_clients`)."""
    with open_clients(settings, metrics) as clients:
        yield clients.bars
