"""Loading the workflow config for a command, with the same rules as the workflow."""

from __future__ import annotations

from pathlib import Path

import yaml

from marketpipe.workflow.settings import WorkflowSettings, apply_overrides, load_settings

DEFAULT_CONFIG = Path("config/config.yaml")


class CommandError(Exception):
    """A command cannot run; the message says why and what to do."""


def load_command_settings(path: Path, overrides: list[str]) -> WorkflowSettings:
    """Read the workflow's config file plus ``KEY=VALUE`` overrides, merged as
    ``snakemake --config`` merges them (:func:`apply_overrides`)."""
    if not path.exists():
        raise CommandError(f"config file {path} not found; pass --config PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CommandError(f"config file {path} is not valid YAML: {exc}") from None
    return load_settings(apply_overrides(raw, overrides))
