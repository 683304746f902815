"""Loading the workflow config for a command, with the same rules as the workflow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from marketpipe.lake.objects import LocalStore
from marketpipe.lake.storage import LAKE_DIR
from marketpipe.workflow.planning import MonthPlan, plan_months
from marketpipe.workflow.settings import WorkflowSettings, load_settings

DEFAULT_CONFIG = Path("config/config.yaml")


class CommandError(Exception):
    """A command cannot run; the message says why and what to do."""


def load_command_settings(path: Path, overrides: list[str]) -> WorkflowSettings:
    """Read the workflow's config file plus ``KEY=VALUE`` overrides (as ``--config`` does)."""
    if not path.exists():
        raise CommandError(f"config file {path} not found; pass --config PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CommandError(f"config file {path} is not valid YAML: {exc}") from None
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise CommandError(f"override {override!r} must look like KEY=VALUE")
        raw[key] = yaml.safe_load(value)
    return load_settings(raw)


def require_lake(settings: WorkflowSettings) -> None:
    """Fail clearly when the lake has not been created yet."""
    lake = settings.lake
    exists = (lake.root / LAKE_DIR).is_dir() if isinstance(lake, LocalStore) else lake.any(LAKE_DIR)
    if not exists:
        raise CommandError(f"no lake at {lake.uri}/ (data_dir); run `snakemake --cores 8` first")


@dataclass(frozen=True)
class Coverage:
    """The planned (symbol, day) grid of a configuration."""

    symbols: list[str]
    months: list[MonthPlan]

    @property
    def days(self) -> list[dt.date]:
        """Every planned trading day, in order."""
        return [day for month in self.months for day in month.days]


def planned_coverage(settings: WorkflowSettings) -> Coverage:
    """The symbols and trading days the configuration asks for."""
    config = settings.config
    return Coverage(list(config.symbols), plan_months(settings.final_days))
