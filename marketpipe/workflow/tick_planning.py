"""Which trades and quotes days a configuration asks for, and which are missing.

A tick day is a final session of the range among the days a symbol should have bars (see
:meth:`WorkflowSettings.expected_days`), for the symbols of ``trades.symbols`` /
``quotes.symbols``. It is missing when its file is absent or the ledger does not record it
(the job adopts such a file instead of fetching it again). One job per kind, symbol and month
with missing days: a liquid symbol's day is millions of rows, so each job is one symbol's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.storage import describe_partitions
from marketpipe.lake.ticks import KINDS, TickKind, present_tick_days
from marketpipe.markettime.timeutil import sorted_days
from marketpipe.workflow.settings import WorkflowSettings


@dataclass(frozen=True)
class TickJob:
    """One Snakemake job: the missing trades or quotes days of one symbol and month."""

    kind: TickKind
    symbol: str
    month: str  # YYYY_MM
    missing: tuple[dt.date, ...]

    @property
    def name(self) -> str:
        """A readable label that is also a rule name, e.g. ``trades_2024_01_BRK_B``."""
        return f"{self.kind}_{self.month}_{re.sub(r'[^A-Za-z0-9]', '_', self.symbol)}"

    def marker(self, markers_dir: Path | str, run_id: str, index: int) -> str:
        """The job's output: a marker of this run (its days are named by the run's
        announcement, and an S3 lake's files are not Snakemake's to check)."""
        return str(Path(markers_dir) / "jobs" / run_id / f"{self.name}_{index}.done")

    def to_json(self) -> dict[str, Any]:
        """The job as the run's saved plan keeps it."""
        return {
            "kind": self.kind,
            "symbol": self.symbol,
            "month": self.month,
            "missing": [day.isoformat() for day in self.missing],
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> TickJob:
        """The job :meth:`to_json` saved."""
        return cls(item["kind"], item["symbol"], item["month"], tuple(sorted_days(item["missing"])))


def tick_jobs(kind: TickKind, symbol: str, missing: list[dt.date]) -> list[TickJob]:
    """One job per month of ``missing`` (sorted days)."""
    return [
        TickJob(kind, symbol, f"{year:04d}_{month:02d}", tuple(days))
        for (year, month), days in itertools.groupby(missing, key=lambda d: (d.year, d.month))
    ]


def pending_tick_jobs(settings: WorkflowSettings) -> list[TickJob]:
    """The trades and quotes jobs a run now would start: one listing of each kind's area
    and one ledger read find the days not stored or not recorded."""
    jobs: list[TickJob] = []
    for kind in KINDS:
        symbols = settings.tick_symbols(kind)
        if not symbols or not settings.final_days:
            continue
        present = present_tick_days(settings.lake, kind, symbols)
        recorded: set[tuple[str, dt.date]] = set()
        if state_path(settings.state_dir).exists():
            with CheckpointStore(settings.state_dir) as store:
                recorded = {(symbol, day) for (_, symbol, day) in store.tick_entries(kind)}
        stored = present & recorded
        for symbol in symbols:
            days = settings.expected_days(symbol).days(settings.final_days)
            missing = [day for day in days if (symbol, day) not in stored]
            jobs.extend(tick_jobs(kind, symbol, missing))
    return jobs


def describe_missing_ticks(jobs: list[TickJob]) -> list[str]:
    """A line per kind naming its missing symbol-days, for the run's announcement."""
    lines = []
    for kind in KINDS:
        missing = sorted(
            (job.symbol, day) for job in jobs if job.kind == kind for day in job.missing
        )
        if missing:
            lines.append(f"missing {kind}: {describe_partitions(missing)}")
    return lines
