"""The configuration reference page of the docs, generated from the config model.

``docs/configuration.md`` is this module's output (a test keeps it current); regenerate it
with ``python -m marketpipe.workflow.config_reference``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marketpipe.workflow.config_loading import config_json_schema

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# Environment variables a person may set (internal ones, passed from a run to its jobs, are
# left out): name -> what it does.
ENVIRONMENT = {
    "APCA_API_KEY_ID": "Alpaca key id (`vendor: alpaca`); never logged or stored",
    "APCA_API_SECRET_KEY": "Alpaca secret key; never logged or stored",
    "APCA_API_OAUTH_TOKEN": "an Alpaca OAuth token instead of the key pair",
    "APCA_API_DATA_URL": "Alpaca's data API root when `alpaca.base_url` is not set",
    "POLYGON_API_KEY": "Massive (Polygon.io) API key (`vendor: polygon`)",
    "POLYGON_API_URL": "Massive's API root when `polygon.base_url` is not set",
    "MARKETPIPE_ALERT_WEBHOOK_URL": "the alert webhook (wins over `alerts.webhook_url`)",
    "MARKETPIPE_STATE_DIR": "where ledger, logs and reports live (overrides `state_dir`)",
    "MARKETPIPE_CACHE_DIR": "MarketPipe's cache: session tables, the state of read-only lakes",
    "MARKETPIPE_NOW": "the market's clock as an RFC-3339 instant (tests, replays)",
    "MARKETPIPE_CONSOLE": "`quiet` (default) or `full`: Snakemake's per-job listing too",
    "AWS_ENDPOINT_URL": "an S3-compatible server for `s3://` lakes (or `s3.endpoint_url`)",
    "AWS_CA_BUNDLE": "a CA bundle for that server's certificate",
}


def render_config_reference() -> str:
    """The page: every key (nested ones dotted), its type, default and meaning, then the
    environment variables."""
    schema = config_json_schema()
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from marketpipe.workflow.config; do not edit by hand. Regenerate: "
        "python -m marketpipe.workflow.config_reference -->",
        "",
        "`config/config.yaml` holds these keys; any of them can be set for one run with "
        "`--config key=value` (nested ones as `'alpaca={feed: iex}'` or `alpaca.feed=iex`). "
        "A bad key or value stops the run before any request with one line naming it; a "
        "key MarketPipe does not know is named with the nearest one it does.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [_row(name, spec, schema) for name, spec in _keys(schema["properties"], schema)]
    lines += ["", "## Environment variables", "", "| variable | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in ENVIRONMENT.items()]
    return "\n".join(lines) + "\n"


def _keys(
    properties: dict[str, Any], schema: dict[str, Any], prefix: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """``(dotted name, spec)`` of every key, a section's keys after the section."""
    keys: list[tuple[str, dict[str, Any]]] = []
    for name, spec in properties.items():
        keys.append((prefix + name, spec))
        section = _section(spec, schema)
        if section is not None:
            keys += _keys(section.get("properties", {}), schema, f"{prefix}{name}.")
    return keys


def _section(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """The model a key holds, when it is a section of keys."""
    ref = spec.get("$ref") or next(
        (option["$ref"] for option in spec.get("anyOf", []) if "$ref" in option), None
    )
    if ref is None:
        return None
    return schema["$defs"][ref.rsplit("/", 1)[-1]]


def _row(name: str, spec: dict[str, Any], schema: dict[str, Any]) -> str:
    section = _section(spec, schema)
    meaning = spec.get("description") or (section or {}).get("description", "")
    kind = "section" if section is not None else _type(spec)
    default = "" if section is not None or "default" not in spec else _shown(spec["default"])
    return f"| `{name}` | {kind} | {default} | {_cell(meaning)} |"


def _type(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " / ".join(f"`{value}`" for value in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    if "anyOf" in spec:
        kinds = (_type(option) for option in spec["anyOf"] if option != {"type": "null"})
        return " or ".join(dict.fromkeys(kinds))
    kind = spec.get("format") or spec.get("type", "any")
    if kind == "password":
        return "secret string"
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    return str(kind)


def _shown(value: Any) -> str:
    return "" if value is None else f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    PAGE.write_text(render_config_reference())
