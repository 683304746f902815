"""The workflow's configuration: one Pydantic model, exported as the JSON schema Snakemake uses.

``load_settings`` turns Snakemake's ``config`` dict (YAML plus ``--config`` overrides) into
validated :class:`WorkflowSettings`, or raises :class:`ConfigError` naming every bad key.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import os
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from marketpipe.connectors import AlpacaConfig
from marketpipe.connectors.alpaca import check_adjustment
from marketpipe.connectors.config import validate_base_url
from marketpipe.connectors.models import Symbol
from marketpipe.lake.objects import ENDPOINT_VARIABLE, LakeStore, S3Store, is_s3, open_store
from marketpipe.markettime import clock
from marketpipe.markettime.calendar import Session, new_york_date, trading_sessions
from marketpipe.markettime.finality import DEFAULT_SETTLE_MINUTES, FREE_PLAN_SIP_DELAY, Finality
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.simulator.actions import ActionBook, ungrouped_records
from marketpipe.simulator.faults import FAULT_KINDS
from marketpipe.simulator.market import BAD_BAR_KINDS, DEFAULT_OUTSIDE_RANGE_RATE

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
STATE_DIR_VARIABLE = "MARKETPIPE_STATE_DIR"


class ConfigError(ValueError):
    """The workflow configuration is invalid; the message names each bad key."""


class AlpacaSettings(BaseModel):
    """Settings of the Alpaca vendor (also used by the demo simulator, which mimics it)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        None,
        description="Alpaca data API root (https; http only for loopback); default: "
        f"$APCA_API_DATA_URL, else {AlpacaConfig.DEFAULT_BASE_URL}",
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
    rate_window_seconds: float = Field(
        60.0, gt=0, le=3600, description="Length of the rate window (Alpaca counts per minute)"
    )
    budget_shares: int = Field(
        1,
        ge=1,
        le=1000,
        description="Split requests_per_minute into this many equal shares, one per fetch job "
        "running at once, for jobs on machines that share no state (a cluster): each job "
        "spends at most its share and Snakemake runs at most this many at once (resource "
        "'api'). 1 = one budget shared through a file on this machine",
    )
    page_size: int = Field(10_000, ge=1, le=10_000, description="Bars per page (max 10000)")
    connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to connect")
    read_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for data")
    max_attempts: int = Field(6, ge=1, le=50, description="Attempts per request")
    backoff_base: float = Field(0.5, gt=0, le=60, description="First back-off ceiling, seconds")
    backoff_cap: float = Field(30.0, gt=0, le=3600, description="Largest back-off, seconds")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        return None if value is None else validate_base_url(value)

    @field_validator("adjustment")
    @classmethod
    def _check_adjustment(cls, value: str) -> str:
        return check_adjustment(value)

    @model_validator(mode="after")
    def _check_shares(self) -> AlpacaSettings:
        if self.requests_per_minute < self.budget_shares:
            raise ValueError(
                f"budget_shares ({self.budget_shares}) leaves less than one request per window "
                f"for each job of requests_per_minute ({self.requests_per_minute})"
            )
        return self


def _known_kinds(value: dict[str, float], kinds: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(value) - set(kinds))
    if unknown:
        raise ValueError(f"unknown {what} kind(s) {unknown}; choose from {list(kinds)}")
    return value


class DemoSettings(BaseModel):
    """The bundled simulator used by ``vendor: demo``; faults are for testing."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the synthetic market")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="The simulator's own per-key limit; 0 = none"
    )
    faults: dict[str, float] = Field(
        default_factory=dict, description=f"Fault rates by kind: {', '.join(FAULT_KINDS)}"
    )
    fail_symbols: dict[str, int] = Field(
        default_factory=dict, description="Symbols whose requests always fail, with the status"
    )
    bad_bars: dict[str, float] = Field(
        default_factory=dict, description=f"Malformed-bar rates by kind: {', '.join(BAD_BAR_KINDS)}"
    )
    listings: dict[str, dt.date] = Field(
        default_factory=dict, description="Symbols' first trading days (no bars before)"
    )
    unknown_symbols: list[str] = Field(
        default_factory=list, description="Tickers the simulator does not know"
    )
    corrections: dict[str, list[dt.date]] = Field(
        default_factory=dict,
        description="Sessions whose bars the simulated vendor corrected after the fact "
        "(a late cancel), by symbol: what `marketpipe refresh` is for",
    )
    plan: Literal["paid", "free"] = Field(
        "paid",
        description="The simulated subscription: free refuses SIP data of the last 15 minutes "
        "(HTTP 403) and /latest with feed=sip, as Alpaca's free plan does",
    )
    outside_range_rate: float = Field(
        DEFAULT_OUTSIDE_RANGE_RATE,
        ge=0,
        le=1,
        description="Share of bars whose open or close lies outside [low, high], as real bars can",
    )
    corporate_actions: dict[str, list[dict[str, Any]]] | None = Field(
        None,
        description="The simulated vendor's corporate actions, in Alpaca's response shape "
        "({forward_splits: [{id, symbol, old_rate, new_rate, ex_date, process_date, ...}], "
        "cash_dividends: [...]}); they move its raw bars and drive its adjusted bars. "
        "Default: the demo market's (an AAPL split and dividends of AAPL, MSFT and SPY)",
    )

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_kinds(value, FAULT_KINDS, "fault")

    @field_validator("bad_bars")
    @classmethod
    def _check_bad_bars(cls, value: dict[str, float]) -> dict[str, float]:
        return _known_kinds(value, BAD_BAR_KINDS, "bad-bar")

    @field_validator("corporate_actions")
    @classmethod
    def _check_actions(
        cls, value: dict[str, list[dict[str, Any]]] | None
    ) -> dict[str, list[dict[str, Any]]] | None:
        if value is not None:
            ActionBook(ungrouped_records(_dates_as_text(value)))
        return value


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


class CorporateActionsSettings(BaseModel):
    """Corporate actions (splits, dividends ...) stored beside the bars for adjusted reads."""

    model_config = ConfigDict(extra="forbid")

    fetch: bool = Field(
        True, description="Bring the configured symbols' corporate actions up to date each run"
    )
    recheck_days: int = Field(
        30,
        ge=0,
        le=3660,
        description="Ask the vendor again about actions processed in the last N days of the "
        "previous check: records can arrive late, and ratios get corrected",
    )


class WorkflowConfig(BaseModel):
    """What to fetch and where to keep it (``config/config.yaml``)."""

    model_config = ConfigDict(extra="forbid", title="MarketPipe workflow configuration")

    symbols: list[Symbol] = Field(min_length=1, description="Tickers to fetch")
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
    vendor: Literal["demo", "alpaca"] = Field(
        "demo", description="demo = the bundled offline simulator; alpaca = the real API"
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
        "(fewer requests); 1 = one job and stream per (symbol, month)",
    )
    alpaca: AlpacaSettings = Field(
        default_factory=AlpacaSettings, description="Alpaca settings (the demo mimics Alpaca)"
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

    @field_validator("symbols")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        duplicates = sorted({symbol for symbol in value if value.count(symbol) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return value

    @field_validator("timeframe")
    @classmethod
    def _check_timeframe(cls, value: str) -> str:
        timeframe = Timeframe.parse(value)
        if timeframe.unit in (TimeframeUnit.WEEK, TimeframeUnit.MONTH):
            raise ValueError(f"{value!r} spans several days; partitions are per day")
        return str(timeframe)

    @model_validator(mode="after")
    def _check_range(self) -> WorkflowConfig:
        if isinstance(self.end, dt.date) and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        if is_s3(self.data_dir):
            S3Store(self.data_dir)  # names a malformed URI
        if self.state_dir is not None and is_s3(self.state_dir):
            raise ValueError("state_dir must be a local directory (the ledger is SQLite)")
        return self


class WorkflowSettings(BaseModel):
    """Validated configuration plus what follows from it at the run's instant ``now``.

    ``now`` is taken once (from :mod:`marketpipe.markettime.clock`), so every decision of one run
    about which sessions are final agrees, however long the run takes.
    """

    model_config = ConfigDict(frozen=True, ignored_types=(functools.cached_property,))

    config: WorkflowConfig
    now: AwareDatetime

    @property
    def data_dir(self) -> Path:
        """The local directory of the ledger, run state, logs and reports: the lake's own
        directory when the lake is local. ``$MARKETPIPE_STATE_DIR`` wins (a cluster job's
        node-local directory: an S3 lake's jobs share no filesystem)."""
        override = os.environ.get(STATE_DIR_VARIABLE) or self.config.state_dir
        if override:
            return Path(override)
        if not is_s3(self.config.data_dir):
            return Path(self.config.data_dir)
        return self._s3_workdir

    @property
    def _s3_workdir(self) -> Path:
        store = S3Store(self.config.data_dir)
        return Path(".marketpipe") / store.bucket / (store.prefix or "_root")

    @property
    def markers_dir(self) -> Path:
        """Where jobs leave the files Snakemake waits for (its working directory, which the
        controller sees): beside the ledger for a local lake."""
        if not is_s3(self.config.data_dir):
            return self.data_dir / "_state"
        return self._s3_workdir / "_markers"

    @functools.cached_property
    def lake(self) -> LakeStore:
        """Where the lake's files live (a local directory or an S3 location)."""
        return open_store(self.config.data_dir, self.config.s3.endpoint_url)

    @property
    def timeframe(self) -> Timeframe:
        """The configured bar width."""
        return Timeframe.parse(self.config.timeframe)

    @property
    def finality(self) -> Finality:
        """When this lake's sessions are final."""
        return Finality(
            self.config.alpaca.feed,
            self.timeframe,
            dt.timedelta(minutes=self.config.settle_minutes),
        )

    @functools.cached_property
    def end(self) -> dt.date:
        """The last New York date of the range (``today`` resolved to the latest final one)."""
        if isinstance(self.config.end, dt.date):
            return self.config.end
        today = new_york_date(self.now)
        # Every month has sessions, and at most the last two of them are not final yet.
        recent = trading_sessions(today - dt.timedelta(days=30), today)
        final, _ = self.finality.split(recent, self.now)
        return final[-1].date

    @functools.cached_property
    def sessions(self) -> list[Session]:
        """Every NYSE session of the configured range, final or not."""
        return trading_sessions(self.config.start, self.end)

    @functools.cached_property
    def sessions_by_finality(self) -> tuple[list[Session], list[Session]]:
        """The range's sessions split into those final at ``now`` and those not final yet."""
        return self.finality.split(self.sessions, self.now)

    @property
    def final_sessions(self) -> list[Session]:
        """The sessions of the range that are final at ``now``: the ones a run fetches."""
        return self.sessions_by_finality[0]

    @property
    def pending_sessions(self) -> list[Session]:
        """The sessions of the range that are not final yet (today's, the future's)."""
        return self.sessions_by_finality[1]

    @property
    def final_days(self) -> list[dt.date]:
        """The New York dates of :attr:`final_sessions`."""
        return [session.date for session in self.final_sessions]

    @property
    def planned_partitions(self) -> int:
        """How many partitions the configuration asks for now (symbols x final sessions)."""
        return len(self.final_sessions) * len(self.config.symbols)

    def at(self, now: dt.datetime) -> WorkflowSettings:
        """The same configuration seen at another instant."""
        return WorkflowSettings(config=self.config, now=now)

    def lake_settings(self) -> dict[str, str]:
        """What a lake is built with; one data_dir never mixes two of these."""
        return {
            "timeframe": self.config.timeframe,
            "feed": self.config.alpaca.feed,
            "adjustment": self.config.alpaca.adjustment,
        }


def config_json_schema() -> dict[str, Any]:
    """The JSON schema of the workflow config, with descriptions and defaults."""
    schema = WorkflowConfig.model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept ``--config`` spellings: dotted keys, comma-separated symbols, YAML dates."""
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str) and "." in key:
            section, _, name = key.partition(".")
            nested = config.setdefault(section, {})
            if isinstance(nested, dict):
                nested[name] = value
                continue
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**value, **config[key]}
        else:
            config[key] = value
    if isinstance(config.get("symbols"), str):
        config["symbols"] = [s.strip() for s in config["symbols"].split(",") if s.strip()]
    return _dates_as_text(config)


def _dates_as_text(value: Any) -> Any:
    """YAML turns ``2024-01-02`` into a date; JSON schema expects the ISO text."""
    if isinstance(value, dict):
        return {key: _dates_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(item) for item in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _coerce_scalars(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """Turn text into the number or boolean the schema expects.

    ``snakemake --config 'alpaca={requests_per_minute: 100}'`` reads nested values as text.
    """
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            key: _coerce_scalars(
                item, properties.get(key, extra if isinstance(extra, dict) else {}), root
            )
            for key, item in value.items()
        }
    if isinstance(value, str) and schema.get("type") in ("integer", "number", "boolean"):
        parsed = yaml.safe_load(value) if value.strip() else value
        if isinstance(parsed, int | float | bool):
            return parsed
    return value


def _schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        key = ".".join(str(part) for part in error.path) or "(top level)"
        messages.append(f"config key {key}: {error.message}")
    return messages


def load_settings(
    raw: dict[str, Any], schema_path: Path = SCHEMA_PATH, now: dt.datetime | None = None
) -> WorkflowSettings:
    """Validate Snakemake's ``config`` against the JSON schema and the model.

    ``now`` is the run's instant, by default :func:`marketpipe.markettime.clock.now`.
    """
    config = _normalise(copy.deepcopy(dict(raw)))
    schema = yaml.safe_load(schema_path.read_text())
    config = _coerce_scalars(config, schema, schema)
    problems = _schema_errors(config, schema)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    try:
        parsed = WorkflowConfig.model_validate(config)
    except ValidationError as exc:
        lines = [
            f"config key {'.'.join(map(str, error['loc'])) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if parsed.vendor == "alpaca":
        alpaca_client_config(parsed)
    return WorkflowSettings(config=parsed, now=now if now is not None else clock.now())


def alpaca_client_config(config: WorkflowConfig, **overrides: Any) -> AlpacaConfig:
    """The client settings from ``alpaca:`` (keys from the environment unless overridden)."""
    settings = config.alpaca
    try:
        base_url = {"base_url": settings.base_url} if settings.base_url else {}
        return AlpacaConfig(
            **{
                **base_url,
                "requests_per_minute": settings.requests_per_minute,
                "page_size": settings.page_size,
                "connect_timeout": settings.connect_timeout,
                "read_timeout": settings.read_timeout,
                "max_attempts": settings.max_attempts,
                "backoff_base": settings.backoff_base,
                "backoff_cap": max(settings.backoff_cap, settings.backoff_base),
                **overrides,
            }
        )
    except ValidationError as exc:
        details = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ConfigError(f"vendor alpaca cannot start: {details}") from None


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate ``workflow/schemas/config.schema.yaml`` from the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated from marketpipe.workflow.settings.WorkflowConfig; do not edit by hand.\n"
    header += "# Regenerate: python -m marketpipe.workflow.settings\n"
    path.write_text(header + yaml.safe_dump(config_json_schema(), sort_keys=False))


if __name__ == "__main__":
    write_schema()
