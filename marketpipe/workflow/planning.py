"""Which partitions a configuration asks for: one per symbol and NYSE session."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from marketpipe.calendar import trading_sessions
from marketpipe.storage import PARTITION_FILE, partition_path


@dataclass(frozen=True)
class MonthPlan:
    """The trading days of one calendar month that fall inside the configured range."""

    year: int
    month: int
    days: tuple[dt.date, ...]

    @property
    def label(self) -> str:
        """``YYYY_MM``, used in rule names."""
        return f"{self.year:04d}_{self.month:02d}"


def plan_months(start: dt.date, end: dt.date) -> list[MonthPlan]:
    """Trading sessions in ``[start, end]``, grouped by month; months without one are left out."""
    sessions = trading_sessions(start, end)
    return [
        MonthPlan(year, month, tuple(session.date for session in group))
        for (year, month), group in itertools.groupby(
            sessions, key=lambda session: (session.date.year, session.date.month)
        )
    ]


def month_outputs(data_dir: Path | str, symbol: str, plan: MonthPlan) -> list[str]:
    """The partition paths one (symbol, month) job produces; ``symbol`` may be a wildcard."""
    return [str(partition_path(data_dir, symbol, day)) for day in plan.days]


def contiguous_runs(days: list[dt.date], sessions: list[dt.date]) -> list[list[dt.date]]:
    """Split sorted ``days`` into runs that are consecutive in the ``sessions`` sequence."""
    position = {day: index for index, day in enumerate(sessions)}
    runs: list[list[dt.date]] = []
    for day in sorted(days):
        if runs and position[day] == position[runs[-1][-1]] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


@dataclass(frozen=True)
class PendingJob:
    """A (symbol, month) whose partitions are not all in the lake yet."""

    symbol: str
    month: MonthPlan
    missing: tuple[dt.date, ...]


def _present_days(month_dir: Path) -> set[int]:
    """Days of one symbol-month directory that hold a published partition file."""
    try:
        entries = list(os.scandir(month_dir))
    except FileNotFoundError:
        return set()
    return {
        int(entry.name[4:])
        for entry in entries
        if entry.name.startswith("day=")
        and os.path.exists(os.path.join(entry.path, PARTITION_FILE))
    }


def pending_jobs(
    data_dir: Path | str, symbols: list[str], months: list[MonthPlan]
) -> list[PendingJob]:
    """The (symbol, month) groups with missing partitions, from one pass over the lake.

    Planning work is proportional to what is missing: complete months cost one directory
    listing, and nothing is asked of Snakemake for them.
    """
    pending = []
    for month in months:
        for symbol in symbols:
            month_dir = partition_path(data_dir, symbol, month.days[0]).parent.parent
            present = _present_days(month_dir)
            missing = tuple(day for day in month.days if day.day not in present)
            if missing:
                pending.append(PendingJob(symbol, month, missing))
    return pending
