"""Loading the workflow config for a command, with the same rules as the workflow."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from marketpipe.workflow.config_loading import apply_overrides, load_settings
from marketpipe.workflow.settings import WorkflowSettings

DEFAULT_CONFIG = Path("config/config.yaml")


class CommandError(Exception):
    """A command cannot run; the message says why and what to do."""


def load_command_settings(
    path: Path, overrides: list[str], read_only: bool = False
) -> WorkflowSettings:
    """Read the workflow's config file plus ``KEY=VALUE`` overrides, merged as
    ``snakemake --config`` merges them (:func:`apply_overrides`); ``read_only`` for a command
    that only reads the lake (which may then be one this user cannot write)."""
    if not path.exists():
        raise CommandError(f"config file {path} not found; pass --config PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CommandError(f"config file {path} is not valid YAML: {exc}") from None
    except ValueError as exc:  # YAML reads 2024-02-30 as a date, and fails on it
        raise CommandError(f"config file {path}: {exc} (a date such as 2024-02-30?)") from None
    settings = load_settings(apply_overrides(raw, overrides), read_only=read_only)
    settings.require_same_lake()
    return settings


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE``, as every command that reads the config takes."""
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"the workflow's config file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as snakemake --config does (e.g. end=2024-03-28)",
    )
