"""``marketpipe status``: per symbol, what the lake holds and what it lacks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from marketpipe.commands.common import planned_coverage, require_lake
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import partition_path
from marketpipe.workflow.planning import pending_jobs
from marketpipe.workflow.settings import WorkflowSettings


@dataclass(frozen=True)
class SymbolStatus:
    """One symbol's coverage of the configured range."""

    symbol: str
    planned: int
    present: int
    known_empty: int
    missing: int
    rows: int
    quarantined_rows: int
    flagged_rows: int
    refreshed: int
    last_bar: dt.datetime | None


def missing_partitions(settings: WorkflowSettings) -> list[tuple[str, dt.date]]:
    """Every (symbol, day) of the range that is final but has no partition file."""
    coverage = planned_coverage(settings)
    return [
        (job.symbol, day)
        for job in pending_jobs(settings.data_dir, coverage.symbols, coverage.months)
        for day in job.missing
    ]


def lake_status(settings: WorkflowSettings) -> list[SymbolStatus]:
    """Coverage per symbol, from the files and the checkpoint ledger."""
    require_lake(settings)
    coverage = planned_coverage(settings)
    days = coverage.days
    with CheckpointStore(settings.data_dir) as store:
        last_bars = store.high_water_marks()
        result = []
        for symbol in coverage.symbols:
            ledger = store.ledger(symbol, days)
            present = [d for d in days if partition_path(settings.data_dir, symbol, d).exists()]
            entries = [ledger[day] for day in present if day in ledger]
            planned_days = set(days)
            refreshed = {r.day for r in store.replacements(symbol) if r.day in planned_days}
            result.append(
                SymbolStatus(
                    symbol=symbol,
                    planned=len(days),
                    present=len(present),
                    known_empty=sum(entry.known_empty for entry in entries),
                    missing=len(days) - len(present),
                    rows=sum(entry.rows for entry in entries),
                    quarantined_rows=sum(entry.rejected_rows for entry in entries),
                    flagged_rows=sum(entry.flagged_rows for entry in entries),
                    refreshed=len(refreshed),
                    last_bar=last_bars.get(symbol),
                )
            )
    return result
