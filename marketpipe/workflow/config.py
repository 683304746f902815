"""The workflow's configuration model: every key, its default, its check and its meaning.

``workflow/schemas/config.schema.yaml`` is generated from it (see ``workflow.settings``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from marketpipe.connectors import AlpacaConfig, PolygonConfig
from marketpipe.connectors.alpaca import check_adjustment
from marketpipe.connectors.config import validate_base_url
from marketpipe.connectors.flat_files import FlatFilesConfig
from marketpipe.connectors.models import Symbol
from marketpipe.lake.lease import RENEW_SECONDS, STALE_AFTER_SECONDS
from marketpipe.lake.location import check_lake_location, check_local_directory
from marketpipe.lake.objects import ENDPOINT_VARIABLE, is_s3
from marketpipe.markettime.finality import DEFAULT_SETTLE_MINUTES, FREE_PLAN_SIP_DELAY
from marketpipe.markettime.spans import DaySpan, DaySpans
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.simulator.settings import DemoSettings
from marketpipe.workflow.config_datasets import (
    CorporateActionsSettings,
    NewsSettings,
    TicksSettings,
    UniverseSettings,
)
from marketpipe.workflow.universe_file import read_universe_file


class ConfigError(ValueError):
    """The workflow configuration is invalid; the message names each bad key."""


class VendorSettings(BaseModel):
    """What every bar vendor's section has: its API root and how requests are paced and
    retried (each vendor adds its own defaults and keys)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, description="API root (https; http only for loopback)")
    requests_per_minute: int = Field(200, ge=1, le=100_000, description="Request budget")
    rate_window_seconds: float = Field(
        60.0, gt=0, le=3600, description="Length of the rate window (vendors count per minute)"
    )
    max_attempts: int = Field(6, ge=1, le=50, description="Attempts per request")
    backoff_base: float = Field(0.5, gt=0, le=60, description="First back-off ceiling, seconds")
    backoff_cap: float = Field(30.0, gt=0, le=3600, description="Largest back-off, seconds")
    budget_shares: int = Field(
        1,
        ge=1,
        le=1000,
        description="(Of this vendor, when it is the one configured.) Split "
        "requests_per_minute into this many equal shares, one per fetch job "
        "running at once, for jobs on machines that share no state (a cluster): each job "
        "spends at most its share and Snakemake runs at most this many at once (resource "
        "'api'). 1 = one budget shared through a file on this machine",
    )

    @field_validator("base_url", "trading_url", "flat_files_endpoint", check_fields=False)
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        return None if value is None else validate_base_url(value)

    @model_validator(mode="after")
    def _check_shares(self) -> VendorSettings:
        if self.requests_per_minute < self.budget_shares:
            raise ValueError(
                f"budget_shares ({self.budget_shares}) leaves less than one request per window "
                f"for each job of requests_per_minute ({self.requests_per_minute})"
            )
        return self


class AlpacaSettings(VendorSettings):
    """Settings of the Alpaca vendor (also used by the demo simulator, which mimics it)."""

    base_url: str | None = Field(
        None,
        description="Alpaca data API root (https; http only for loopback); default: "
        f"$APCA_API_DATA_URL, else {AlpacaConfig.DEFAULT_BASE_URL}",
    )
    trading_url: str | None = Field(
        None,
        description="Alpaca trading API root, asked what a symbol names today (its assets); "
        f"default: $APCA_API_BASE_URL, else {AlpacaConfig.DEFAULT_TRADING_URL}",
    )
    feed: Literal["sip", "iex"] = Field(
        "sip", description="sip = all US exchanges (paid plans); iex = IEX only (free plan)"
    )
    adjustment: str = Field(
        "raw", description="raw, split, dividend, spin-off, all, or a comma-separated mix"
    )
    requests_per_minute: int = Field(
        200, ge=1, le=100_000, description="Request budget (200 on the free plan)"
    )
    page_size: int = Field(10_000, ge=1, le=10_000, description="Bars per page (max 10000)")
    connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to connect")
    read_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for data")

    @field_validator("adjustment")
    @classmethod
    def _check_adjustment(cls, value: str) -> str:
        return check_adjustment(value)


class PolygonSettings(VendorSettings):
    """Settings of the Massive (Polygon.io) vendor: SIP aggregates, raw."""

    base_url: str | None = Field(
        None,
        description="Massive / Polygon API root (https; http only for loopback); default: "
        f"${PolygonConfig.ENV_BASE_URL}, else {PolygonConfig.DEFAULT_BASE_URL}",
    )
    requests_per_minute: int = Field(
        5, ge=1, le=100_000, description="Request budget (the free tier allows 5)"
    )
    flat_files: bool = Field(
        False,
        description="Backfill from the vendor's flat files: one gzipped CSV per day for the "
        "whole market, read once for every symbol (S3 keys from "
        f"${FlatFilesConfig.ENV_ACCESS_KEY_ID[0]} / ${FlatFilesConfig.ENV_SECRET_ACCESS_KEY[0]} "
        "or the MASSIVE_S3_ names); days without a file yet come from the REST API",
    )
    flat_files_endpoint: str = Field(
        FlatFilesConfig.DEFAULT_ENDPOINT, description="The flat files' S3-compatible endpoint"
    )
    flat_files_bucket: str = Field(
        FlatFilesConfig.DEFAULT_BUCKET, min_length=3, description="The flat files' bucket"
    )
    flat_files_prefix: str = Field(
        FlatFilesConfig.DEFAULT_PREFIX,
        min_length=1,
        description="The minute files' key prefix (YYYY/MM/YYYY-MM-DD.csv.gz below it)",
    )


class AlertSettings(BaseModel):
    """Where to send an alert when a run fails or leaves final sessions missing."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = Field(
        None,
        description="Webhook receiving a JSON POST (Slack-compatible 'text' plus the run "
        "summary); a secret. $MARKETPIPE_ALERT_WEBHOOK_URL wins when set",
    )
    on_success: bool = Field(False, description="Also alert when a run succeeded")
    deadline_seconds: float = Field(
        5.0, gt=0, le=60, description="Longest a run end waits for the webhook, all attempts"
    )
    busy_minutes: float = Field(
        180,
        ge=0,
        description="`marketpipe update` alerts when another run has held the lake longer "
        "than this; a shorter overlap (the last run still finishing) exits 75 without one",
    )

    @field_validator("webhook_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL (its value is not shown: it is a secret)")
        return value


class S3Settings(BaseModel):
    """How to reach the S3 (or S3-compatible) server of an ``s3://`` lake."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        None,
        description="The S3 API's URL (a MinIO or other S3-compatible server); default: "
        f"${ENDPOINT_VARIABLE}, else AWS",
    )
    lease_seconds: float = Field(
        STALE_AFTER_SECONDS,
        ge=4,
        description="One controller per S3 lake: a lease unchanged this long (as seen by the "
        "next controller's own clock) is abandoned, and its holder stops writing a tenth of "
        "it earlier",
    )
    renew_seconds: float = Field(
        RENEW_SECONDS, gt=0, description="How often the holder renews the lease (below half of it)"
    )

    @model_validator(mode="after")
    def _check_lease(self) -> S3Settings:
        if self.renew_seconds >= self.lease_seconds / 2:
            raise ValueError("renew_seconds must be below half of lease_seconds")
        return self


class WorkflowConfig(BaseModel):
    """What to fetch and where to keep it (``config/config.yaml``)."""

    model_config = ConfigDict(extra="forbid", title="MarketPipe workflow configuration")

    universe: UniverseSettings | None = Field(
        None,
        description="Members to fetch for their membership days only (with or instead of "
        "symbols); marketpipe.members() says who was in it",
    )
    symbols: list[Symbol] = Field(
        default_factory=list,
        description="Tickers to fetch on every day of the range (with a universe: besides "
        "its members)",
    )
    # Filled from the universe file when the config is read (no key of the YAML).
    membership: SkipJsonSchema[dict[str, DaySpans]] = Field(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="The days of the range each universe member is fetched (symbols "
        "listed in symbols are fetched on every day and are not here)",
    )
    start: dt.date = Field(description="First trading day to fetch (New York date, inclusive)")
    end: dt.date | Literal["today"] = Field(
        description="Last trading day to fetch (New York date, inclusive); 'today' = the "
        "latest session that is final (for daily schedules)"
    )
    settle_minutes: int = Field(
        DEFAULT_SETTLE_MINUTES,
        ge=FREE_PLAN_SIP_DELAY.seconds // 60,
        le=24 * 60,
        description="A session is final this long after its last bar window ends (sip 20:00 "
        "New York, 17:00 on early closes; iex 17:00; 1Day: the next session's open); only "
        "final sessions are fetched. At least 15: Alpaca's free plan refuses newer SIP data",
    )
    timeframe: str = Field("1Min", description="Bar width: 1Min..59Min, 1Hour..23Hour or 1Day")
    vendor: Literal["demo", "alpaca", "polygon"] = Field(
        "demo",
        description="demo = the bundled offline simulator; alpaca = Alpaca's API (APCA_* keys); "
        "polygon = Massive/Polygon.io aggregates (POLYGON_API_KEY; SIP, raw; one lake per vendor)",
    )
    data_dir: str = Field(
        "data",
        min_length=1,
        description="Root of the lake: a local directory, or s3://bucket/prefix on S3 or an "
        "S3-compatible server (credentials and region from the standard AWS variables)",
    )
    state_dir: str | None = Field(
        None,
        description="Local directory of the ledger, run state, logs and reports; default: "
        "data_dir for a local lake, .marketpipe/<bucket>/<prefix> for an S3 lake",
    )
    s3: S3Settings = Field(default_factory=S3Settings, description="How to reach an S3 lake")
    symbols_per_job: int = Field(
        10,
        ge=1,
        le=100,
        description="Symbols one job fetches together per month; their bars share pages "
        "(fewer requests). Symbols missing only a few days share a job in larger numbers, up "
        "to as many partitions (at most 200 symbols); 1 = one job and stream per (symbol, "
        "month). With polygon.flat_files, a job takes every symbol missing the same days",
    )
    consolidate: bool = Field(
        True,
        description="Also keep each closed symbol-month as one file (ohlcv_monthly/), which "
        "read_bars, scan_bars and export use where it is current: reads of months or years "
        "open 20x fewer files; costs about as much disk again as the day files",
    )
    alpaca: AlpacaSettings = Field(
        default_factory=AlpacaSettings, description="Alpaca settings (the demo mimics Alpaca)"
    )
    polygon: PolygonSettings = Field(
        default_factory=PolygonSettings, description="Massive / Polygon.io settings"
    )
    demo: DemoSettings = Field(
        default_factory=DemoSettings, description="The bundled simulator (vendor: demo)"
    )
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Alerts at the end of a run"
    )
    corporate_actions: CorporateActionsSettings = Field(
        default_factory=CorporateActionsSettings,
        description="Corporate actions kept beside the bars (read_bars applies them)",
    )
    news: NewsSettings = Field(
        default_factory=NewsSettings,
        description="News kept beside the bars (read_news, news_events)",
    )

    trades: TicksSettings = Field(
        default_factory=TicksSettings,
        description="Trades kept beside the bars (read_trades, read_bars(source='trades'))",
    )
    quotes: TicksSettings = Field(
        default_factory=TicksSettings,
        description="Quotes (national best bid and offer) kept beside the bars (read_quotes)",
    )

    @field_validator("symbols")
    @classmethod
    def _unique(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value and info.data.get("universe") is None:
            raise ValueError("is empty: name at least one symbol, or a universe file")
        duplicates = sorted({symbol for symbol in value if value.count(symbol) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _with_universe(self) -> WorkflowConfig:
        """Add the universe's members of the range to the symbols."""
        if self.universe is None or self.membership:  # membership: validated again, as a field
            return self
        last = self.end if isinstance(self.end, dt.date) else None
        window = DaySpan(self.start, last)
        explicit = set(self.symbols)
        self.membership = {
            symbol: days
            for symbol, spans in read_universe_file(self.universe.file).items()
            if (days := spans.within(window)).spans and symbol not in explicit
        }
        self.symbols = [*self.symbols, *sorted(self.membership)]
        if not self.symbols:
            raise ValueError(
                f"universe file {self.universe.file} has no member between {self.start} and "
                f"{self.end}, and symbols is empty"
            )
        return self

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        timeframe = Timeframe.parse(value)
        if timeframe.unit in (TimeframeUnit.WEEK, TimeframeUnit.MONTH):
            raise ValueError(f"{value!r} spans several days; partitions are per day")
        return str(timeframe)

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, value: str, info: ValidationInfo) -> str:
        # Reading commands (status, plan, verify, export, reconcile) accept a lake they
        # cannot write.
        return check_lake_location(value, read_only=bool((info.context or {}).get("read_only")))

    @field_validator("state_dir")
    @classmethod
    def _check_state_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if is_s3(value):
            raise ValueError("must be a local directory (the ledger is SQLite)")
        return str(check_local_directory(value))

    @model_validator(mode="after")
    def _check_tick_symbols(self) -> WorkflowConfig:
        for kind in ("trades", "quotes"):
            chosen = getattr(self, kind).symbols or []
            unlisted = sorted(set(chosen) - set(self.symbols))
            if unlisted:
                raise ValueError(
                    f"{kind}.symbols names {', '.join(unlisted)}, not among the configured "
                    "symbols; add them to symbols (or the universe) or leave them out"
                )
        return self

    @model_validator(mode="after")
    def _check_range(self) -> WorkflowConfig:
        if isinstance(self.end, dt.date) and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self
