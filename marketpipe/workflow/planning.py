"""Which partitions a configuration asks for: one per symbol and NYSE session."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

from marketpipe.calendar import trading_sessions
from marketpipe.storage import partition_path


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
