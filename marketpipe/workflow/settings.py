"""The workflow's configuration: one Pydantic model, exported as the JSON schema Snakemake uses.

``load_settings`` turns Snakemake's ``config`` dict (YAML plus ``--config`` overrides) into
validated :class:`WorkflowSettings`, or raises :class:`ConfigError` naming every bad key.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import functools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    ValidationError,
)

from marketpipe.connectors import AlpacaConfig, ClientConfig, PolygonConfig
from marketpipe.lake.identity import (
    LakeIdentity,
    LakeIdentityMismatch,
    require_same,
    stored_identity,
)
from marketpipe.lake.location import check_local_directory, is_writable_directory
from marketpipe.lake.objects import LakeStore, S3Store, is_s3, open_store
from marketpipe.lake.read_only import read_only_state_dir, snapshot_state
from marketpipe.lake.run_lock import RunLock
from marketpipe.markettime import clock
from marketpipe.markettime.calendar import Session, new_york_date, trading_sessions
from marketpipe.markettime.finality import Finality
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.markettime.timeutil import dates_as_text
from marketpipe.workflow.config import (
    ConfigError,
    VendorSettings,
    WorkflowConfig,
)
from marketpipe.workflow.console import console_mode

# The workflow repository's copy of the schema, for people and editors; the package itself
# validates with the schema generated from the model, so an installed package needs no file.
SCHEMA_PATH = Path("workflow") / "schemas" / "config.schema.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
STATE_DIR_VARIABLE = "MARKETPIPE_STATE_DIR"


class WorkflowSettings(BaseModel):
    """Validated configuration plus what follows from it at the run's instant ``now``.

    ``now`` is taken once (from :mod:`marketpipe.markettime.clock`), so every decision of one run
    about which sessions are final agrees, however long the run takes.
    """

    model_config = ConfigDict(frozen=True, ignored_types=(functools.cached_property,))

    config: WorkflowConfig
    now: AwareDatetime
    # A reading command's settings: a local lake it cannot write keeps its state in the
    # user's cache instead (see read_only_state).
    read_only: bool = False

    @property
    def state_dir(self) -> Path:
        """The local directory of the ledger, run state, logs and reports: the lake's own
        directory when the lake is local. ``$MARKETPIPE_STATE_DIR`` wins (a cluster job's
        node-local directory: an S3 lake's jobs share no filesystem)."""
        override = os.environ.get(STATE_DIR_VARIABLE) or self.config.state_dir
        if override:
            return Path(override)
        if not is_s3(self.config.data_dir):
            if self.read_only and self._lake_is_read_only:
                return self._read_only_state
            return Path(self.config.data_dir)
        return self._s3_workdir

    @functools.cached_property
    def _lake_is_read_only(self) -> bool:
        lake = Path(self.config.data_dir)
        return lake.is_dir() and not is_writable_directory(lake)

    @functools.cached_property
    def _read_only_state(self) -> Path:
        """A copy of a read-only lake's state (ledger, last run), said once on stderr."""
        lake = Path(self.config.data_dir)
        copy = snapshot_state(lake, read_only_state_dir(lake))
        print(
            f"[marketpipe] {lake} is read-only here: its ledger is read from a copy in {copy} "
            "(nothing is written to the lake)",
            file=sys.stderr,
        )
        return copy

    @property
    def _s3_workdir(self) -> Path:
        store = S3Store(self.config.data_dir)
        return Path(".marketpipe") / store.bucket / (store.prefix or "_root")

    @property
    def markers_dir(self) -> Path:
        """Where jobs leave the files Snakemake waits for (its working directory, which the
        controller sees): beside the ledger for a local lake."""
        if not is_s3(self.config.data_dir):
            return self.state_dir / "_state"
        return self._s3_workdir / "_markers"

    def run_lock(self, purpose: str) -> RunLock:
        """The lake's run lock (and an S3 lake's lease, with the configured timing)."""
        s3 = self.config.s3
        return RunLock(
            self.state_dir,
            purpose,
            self.lake,
            renew_every=s3.renew_seconds,
            stale_after=s3.lease_seconds,
        )

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
            self.feed,
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
        return WorkflowSettings(config=self.config, now=now, read_only=self.read_only)

    @property
    def identity(self) -> LakeIdentity:
        """The bars this configuration asks for (a lake holds one such identity)."""
        return LakeIdentity(self.config.vendor, self.feed, self.config.timeframe, self.adjustment)

    @functools.cached_property
    def held_identity(self) -> LakeIdentity | None:
        """What the lake holds, read once (``None``: nothing yet, or a lake that cannot be
        reached now, which the caller reports in its own words)."""
        try:
            return stored_identity(self.lake)
        except LakeIdentityMismatch:
            raise
        except Exception:  # botocore's errors and OSError: not this check's to report
            return None

    def require_same_lake(self) -> LakeIdentity | None:
        """Stop with :class:`LakeIdentityMismatch` when the lake holds other bars than this
        configuration asks for; what it holds (see :attr:`held_identity`)."""
        require_same(self.lake.uri, self.held_identity, self.identity)
        return self.held_identity

    def lake_settings(self) -> dict[str, str]:
        """What a lake is built with; one data_dir never mixes two of these."""
        return {
            "timeframe": self.config.timeframe,
            "feed": self.feed,
            "adjustment": self.adjustment,
            "vendor": self.config.vendor,
        }

    @property
    def feed(self) -> str:
        """The bars' feed: Alpaca's configured one; Polygon's consolidated tape is SIP."""
        return "sip" if self.config.vendor == "polygon" else self.config.alpaca.feed

    @property
    def adjustment(self) -> str:
        """The bars' adjustment as fetched: Polygon's are always raw (``adjusted=false``)."""
        return "raw" if self.config.vendor == "polygon" else self.config.alpaca.adjustment

    @property
    def vendor_section(self) -> VendorSettings:
        """The bar vendor's settings (its request budget); the demo vendor is Alpaca's."""
        return self.config.polygon if self.config.vendor == "polygon" else self.config.alpaca

    @property
    def fetches_news(self) -> bool:
        """Whether runs keep the news (Alpaca's endpoint; the demo simulator serves it too)."""
        return self.config.news.fetch and self.config.vendor != "polygon"

    @functools.cached_property
    def news_days(self) -> list[dt.date]:
        """The calendar days of the range whose news is final at ``now``: the day is over in
        New York (plus ``settle_minutes``), as bars wait for their session to settle."""
        last = min(self.end, new_york_date(self.now - self.finality.settle) - dt.timedelta(days=1))
        count = (last - self.config.start).days + 1
        return [self.config.start + dt.timedelta(days=offset) for offset in range(count)]

    @property
    def fetches_actions(self) -> bool:
        """Whether runs keep the corporate actions (Alpaca's endpoint; not yet for Polygon)."""
        return self.config.corporate_actions.fetch and self.config.vendor != "polygon"


@functools.cache
def config_json_schema() -> dict[str, Any]:
    """The JSON schema of the workflow config, with descriptions and defaults (do not modify)."""
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
    if isinstance(config.get("symbols"), list):  # tickers are upper case: aapl is AAPL
        config["symbols"] = [
            s.strip().upper() if isinstance(s, str) else s for s in config["symbols"]
        ]
    return dates_as_text(config)


def _check_date(config: dict[str, Any], key: str) -> None:
    """A ``start``/``end`` that is not a date (``2024-02-30``) named in one line."""
    value = config.get(key)
    if not isinstance(value, str) or value == "today":
        return
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        allowed = " or 'today'" if key == "end" else ""
        raise ConfigError(
            f"invalid configuration:\n  config key {key}: {value!r} is not a date "
            f"(YYYY-MM-DD{allowed}): {exc}"
        ) from None


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
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            messages.extend(_unknown_keys(error))
            continue
        key = ".".join(str(part) for part in error.path) or "(top level)"
        messages.append(f"config key {key}: {error.message}")
    return messages


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    """One line per key the schema does not know, with the nearest known key if any."""
    known = list(error.schema.get("properties", {}))
    prefix = "".join(f"{part}." for part in error.path)
    lines = []
    for name in sorted(set(error.instance) - set(known), key=str):
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        lines.append(f"config key {prefix}{name}: not a MarketPipe setting{hint}")
    return lines


def snakemake_config_entries(entries: Sequence[str]) -> list[str]:
    """``KEY=VALUE`` entries as ``snakemake --config`` takes them; MarketPipe's shorthand
    ``section.key=value`` becomes ``section={"key": "value"}`` (Snakemake refuses dots)."""
    converted = []
    for entry in entries:
        key, separator, value = entry.partition("=")
        if separator and "." in key:
            *sections, name = key.split(".")
            nested: dict[str, Any] = {name: value}
            for section in reversed(sections[1:]):
                nested = {section: nested}
            entry = f"{sections[0]}={json.dumps(nested)}"
        converted.append(entry)
    return converted


def apply_overrides(raw: dict[str, Any], entries: Sequence[str]) -> dict[str, Any]:
    """Merge ``KEY=VALUE`` entries into ``raw`` exactly as ``snakemake --config`` does, with
    Snakemake's own parser and merge: nested sections key by key, scalars and lists replaced.

    ``marketpipe --set`` goes through here, and ``marketpipe update`` hands Snakemake the same
    :func:`snakemake_config_entries`, so the command and the workflow see one configuration.
    """
    if not entries:
        return raw
    from snakemake.cli import parse_config  # imported only when needed: it takes ~0.4 s
    from snakemake.utils import update_config

    try:
        overrides = parse_config(snakemake_config_entries(entries))
    except ValueError as exc:
        raise ConfigError(f"--set {' '.join(entries)}: {exc}; use KEY=VALUE") from None
    update_config(raw, overrides)
    return raw


def load_settings(
    raw: dict[str, Any], now: dt.datetime | None = None, read_only: bool = False
) -> WorkflowSettings:
    """Validate Snakemake's ``config`` against the JSON schema and the model.

    ``now`` is the run's instant, by default :func:`marketpipe.markettime.clock.now`.
    ``read_only``: for commands that only read the lake, which may then be one this user
    cannot write.
    """
    environment_now = _check_environment()
    config = _normalise(copy.deepcopy(dict(raw)))
    for key in ("start", "end"):
        _check_date(config, key)
    schema = config_json_schema()
    config = _coerce_scalars(config, schema, schema)
    problems = _schema_errors(config, schema)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    try:
        parsed = WorkflowConfig.model_validate(config, context={"read_only": read_only})
    except ValidationError as exc:
        lines = [
            f"config key {'.'.join(map(str, error['loc'])) or '(top level)'}: "
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        ]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    if parsed.vendor == "alpaca":
        alpaca_client_config(parsed)
    if parsed.vendor == "polygon":
        polygon_client_config(parsed)
    return WorkflowSettings(
        config=parsed, now=now if now is not None else environment_now, read_only=read_only
    )


def _check_environment() -> dt.datetime:
    """Check the environment variables MarketPipe reads as settings, as config keys are
    checked (one line naming the variable); return the market's clock (``$MARKETPIPE_NOW``)."""
    try:
        current = clock.now()
    except ValueError as exc:
        raise ConfigError(f"environment variable {exc}") from None
    state_dir = os.environ.get(STATE_DIR_VARIABLE)
    if state_dir:
        try:
            check_local_directory(state_dir)
        except ValueError as exc:
            raise ConfigError(f"environment variable {STATE_DIR_VARIABLE}: {exc}") from None
    try:
        console_mode()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return current


def alpaca_client_config(config: WorkflowConfig, **overrides: Any) -> AlpacaConfig:
    """The client settings from ``alpaca:`` (keys from the environment unless overridden)."""
    fields = ("page_size", "connect_timeout", "read_timeout")
    return _client_config("alpaca", AlpacaConfig, config.alpaca, fields, overrides)


def polygon_client_config(config: WorkflowConfig, **overrides: Any) -> PolygonConfig:
    """The client settings from ``polygon:`` (the key from the environment unless given)."""
    return _client_config("polygon", PolygonConfig, config.polygon, (), overrides)


ClientConfigT = TypeVar("ClientConfigT", bound=ClientConfig)


def _client_config(
    vendor: str,
    config_class: type[ClientConfigT],
    section: VendorSettings,
    fields: tuple[str, ...],
    overrides: dict[str, Any],
) -> ClientConfigT:
    """A vendor's client settings from its config section: the budget and retry bounds every
    vendor has, its own ``fields``, then ``overrides``; a problem names the vendor."""
    values: dict[str, Any] = {"base_url": section.base_url} if section.base_url else {}
    values |= {name: getattr(section, name) for name in fields}
    values |= {
        "requests_per_minute": section.requests_per_minute,
        "rate_window_seconds": section.rate_window_seconds,
        "max_attempts": section.max_attempts,
        "backoff_base": section.backoff_base,
        "backoff_cap": max(section.backoff_cap, section.backoff_base),
    }
    try:
        return config_class(**{**values, **overrides})
    except ValidationError as exc:
        details = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise ConfigError(f"vendor {vendor} cannot start: {details}") from None


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate the repository's ``workflow/schemas/config.schema.yaml`` from the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated from marketpipe.workflow.config.WorkflowConfig; do not edit by hand.\n"
    header += "# Regenerate: python -m marketpipe.workflow.settings\n"
    path.write_text(header + yaml.safe_dump(config_json_schema(), sort_keys=False))


if __name__ == "__main__":
    write_schema()
