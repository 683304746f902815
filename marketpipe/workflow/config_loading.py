"""Reading the workflow's configuration: Snakemake's ``config`` or a config file with
``--config``-style overrides, checked against the JSON schema and the model (each problem one
line naming the key), and the environment variables MarketPipe reads as settings.

``workflow/schemas/config.schema.yaml`` is generated here from the model.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import ValidationError

from marketpipe.lake.location import check_local_directory
from marketpipe.markettime import clock
from marketpipe.markettime.timeutil import dates_as_text
from marketpipe.workflow.config import ConfigError, WorkflowConfig
from marketpipe.workflow.console import console_mode
from marketpipe.workflow.settings import (
    STATE_DIR_VARIABLE,
    WorkflowSettings,
    alpaca_client_config,
    flat_files_config,
    polygon_client_config,
)

# The workflow repository's copy of the schema, for people and editors; the package itself
# validates with the schema generated from the model, so an installed package needs no file.
SCHEMA_PATH = Path("workflow") / "schemas" / "config.schema.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


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
        if parsed.polygon.flat_files:
            flat_files_config(parsed)
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


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate the repository's ``workflow/schemas/config.schema.yaml`` from the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated from marketpipe.workflow.config.WorkflowConfig; do not edit by hand.\n"
    header += "# Regenerate: python -m marketpipe.workflow.config_loading\n"
    path.write_text(header + yaml.safe_dump(config_json_schema(), sort_keys=False))


if __name__ == "__main__":
    write_schema()
