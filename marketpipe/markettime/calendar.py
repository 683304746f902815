"""NYSE trading sessions (holidays, early closes, DST) from the maintained exchange_calendars."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib.metadata
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from marketpipe.foundation.files import write_atomically

NEW_YORK = ZoneInfo("America/New_York")
EXCHANGE = "XNYS"

# Extended-hours windows per feed, in New York wall-clock time.
_PRE_MARKET_OPEN = {"sip": dt.time(4, 0), "iex": dt.time(8, 0)}
_AFTER_HOURS_CLOSE = {"sip": dt.time(20, 0), "iex": dt.time(17, 0)}
_EARLY_CLOSE_AFTER_HOURS_CLOSE = dt.time(17, 0)
_REGULAR_CLOSE = dt.time(16, 0)


@dataclass(frozen=True)
class Session:
    """One NYSE trading day: its New York date and its regular open and close in UTC."""

    date: dt.date
    open: dt.datetime
    close: dt.datetime

    @property
    def early_close(self) -> bool:
        """True when the regular session ends before 16:00 New York time."""
        return self.close.astimezone(NEW_YORK).time() < _REGULAR_CLOSE

    def extended_window(self, feed: str = "sip") -> tuple[dt.datetime, dt.datetime]:
        """UTC ``[start, end)`` of the minutes a feed can carry bars for on this day."""
        pre_open = _PRE_MARKET_OPEN.get(feed, _PRE_MARKET_OPEN["sip"])
        after_close = _AFTER_HOURS_CLOSE.get(feed, _AFTER_HOURS_CLOSE["sip"])
        if self.early_close:
            after_close = min(after_close, _EARLY_CLOSE_AFTER_HOURS_CLOSE)
        start = dt.datetime.combine(self.date, pre_open, NEW_YORK).astimezone(dt.UTC)
        end = dt.datetime.combine(self.date, after_close, NEW_YORK).astimezone(dt.UTC)
        return start, end


def calendar_cache_dir() -> Path:
    """Where computed session tables are kept: ``$MARKETPIPE_CACHE_DIR``, else the user's
    cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``marketpipe/``."""
    explicit = os.environ.get("MARKETPIPE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "marketpipe"


def _cache_file(year: int) -> Path:
    # Keyed by the library's version: a release that learns a new holiday gets a new file.
    version = importlib.metadata.version("exchange-calendars")
    return calendar_cache_dir() / "calendars" / f"{EXCHANGE}-{version}-{year}.json"


@functools.lru_cache(maxsize=64)
def _sessions_for_year(year: int) -> tuple[Session, ...]:
    """The year's sessions; computing them costs ~0.5 s (pandas), so they are cached on disk."""
    path = _cache_file(year)
    try:
        rows = json.loads(path.read_text())
        return tuple(
            Session(dt.date.fromisoformat(day), _utc(opened), _utc(closed))
            for day, opened, closed in rows
        )
    except (OSError, ValueError, TypeError):
        pass  # not cached yet (or unreadable): compute, then try to cache
    sessions = _compute_sessions(year)
    rows = [
        [s.date.isoformat(), int(s.open.timestamp()), int(s.close.timestamp())] for s in sessions
    ]
    with contextlib.suppress(OSError):  # a read-only home only costs recomputing next time
        write_atomically(path, json.dumps(rows).encode())
    return sessions


def _utc(epoch_seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC)


def _compute_sessions(year: int) -> tuple[Session, ...]:
    import exchange_calendars  # imported lazily: it pulls in pandas

    with warnings.catch_warnings():
        # exchange_calendars trips pandas deprecation warnings that are not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        calendar = exchange_calendars.get_calendar(
            EXCHANGE, start=f"{year}-01-01", end=f"{year}-12-31"
        )
    schedule = calendar.schedule
    return tuple(
        Session(
            date=label.date(),
            open=opened.to_pydatetime().astimezone(dt.UTC),
            close=closed.to_pydatetime().astimezone(dt.UTC),
        )
        for label, opened, closed in zip(
            schedule.index, schedule["open"], schedule["close"], strict=True
        )
    )


def trading_sessions(start: dt.date, end: dt.date) -> list[Session]:
    """All NYSE sessions whose New York date lies in ``[start, end]`` (inclusive)."""
    if end < start:
        return []
    return [
        session
        for year in range(start.year, end.year + 1)
        for session in _sessions_for_year(year)
        if start <= session.date <= end
    ]


def next_session(day: dt.date) -> Session:
    """The first NYSE session after the New York date ``day``."""
    # NYSE never closes for more than a few days in a row; two weeks is a wide margin.
    later = trading_sessions(day + dt.timedelta(days=1), day + dt.timedelta(days=15))
    if not later:
        raise ValueError(f"no NYSE session in the two weeks after {day}")
    return later[0]


def previous_session(day: dt.date) -> Session:
    """The last NYSE session before the New York date ``day``."""
    earlier = trading_sessions(day - dt.timedelta(days=15), day - dt.timedelta(days=1))
    if not earlier:
        raise ValueError(f"no NYSE session in the two weeks before {day}")
    return earlier[-1]


def new_york_midnight(day: dt.date) -> dt.datetime:
    """00:00 New York time on ``day``, in UTC (the start of that trading date)."""
    return dt.datetime.combine(day, dt.time(0, 0), NEW_YORK).astimezone(dt.UTC)


def new_york_days_range(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC ``[start, end]`` covering the New York dates ``first`` to ``last`` inclusive."""
    end = new_york_midnight(last + dt.timedelta(days=1)) - dt.timedelta(seconds=1)
    return new_york_midnight(first), end


def new_york_date(moment: dt.datetime) -> dt.date:
    """The New York calendar date of an aware instant (the partition day of a bar)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; pass a tz-aware datetime")
    return moment.astimezone(NEW_YORK).date()


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
