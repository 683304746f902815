"""Which files a read opens: from symbols x sessions, a current month file for each whole
month the range covers, day files for the rest.

Walking a lake of a hundred thousand small files to find a symbol-year costs seconds (hive
discovery lists every directory); the paths a read needs follow from the symbols and the
NYSE sessions of the range, so nothing else is listed or opened. A partition that is not in
the lake is reported, never silently left out.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from marketpipe.lake.month_sources import Month, month_of, month_sessions, usable_month_keys
from marketpipe.lake.objects import LakeStore, LocalStore, lake_filesystem
from marketpipe.lake.storage import (
    LAKE_DIR,
    PARTITION_FILE,
    describe_partitions,
    partition_key,
    partition_of,
)
from marketpipe.lake.store_types import FileStamp
from marketpipe.markettime.calendar import Session, new_york_date, trading_sessions
from marketpipe.markettime.spans import EVERY_DAY, DaySpans
from marketpipe.markettime.timeutil import parse_rfc3339, require_utc


class MissingPartitionsError(LookupError):
    """Some requested (symbol, session) partitions are not in the lake; the message names them."""

    def __init__(self, missing: list[tuple[str, dt.date]], dataset: str = "") -> None:
        self.missing = missing
        what = f"{dataset} day(s)" if dataset else "partition(s)"
        how = f"with {dataset}.fetch: true, " if dataset else ""
        super().__init__(
            f"{len(missing)} {what} are not in the lake: {describe_partitions(missing)}. "
            f"Fetch them ({how}"
            "snakemake or marketpipe update; sessions that are not final yet cannot be), "
            "or read what is there (missing='skip'; export: --skip-missing)"
        )


class NoLakeError(FileNotFoundError):
    """``data_dir`` names no lake (nothing was ever written there)."""


def sorted_symbols(symbols: str | Sequence[str]) -> list[str]:
    """One ticker or several, as a sorted list (the order bars come back in)."""
    return [symbols] if isinstance(symbols, str) else sorted(symbols)


def range_bound(
    value: dt.date | dt.datetime | str, name: str
) -> tuple[dt.date, dt.datetime | None]:
    """A range end as a New York date, plus the exact instant when a datetime was given
    (text: ``YYYY-MM-DD``, or an ISO instant with its offset)."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value) if len(value) == 10 else parse_rfc3339(value, name)
        except ValueError:
            raise ValueError(
                f"{name} {value!r} is neither a YYYY-MM-DD date nor an instant with its offset"
            ) from None
    if isinstance(value, dt.datetime):
        instant = require_utc(value, name)
        return new_york_date(instant), instant
    if isinstance(value, dt.date):
        return value, None
    raise TypeError(f"{name} must be a date or a tz-aware datetime, got {type(value).__name__}")


@dataclass(frozen=True)
class Series:
    """What a read of ``name`` opens: the lake symbol ``symbol``'s files on ``days`` (a
    renamed security's old ticker reads its symbol's files for the days it used it)."""

    name: str
    symbol: str
    days: DaySpans = EVERY_DAY
    required: DaySpans | None = None  # the days that must be there (default: all ``days``)

    def requires(self, day: dt.date) -> bool:
        """Whether ``day``'s partition is missing if it is not in the lake."""
        return (self.days if self.required is None else self.required).covers(day)

    @classmethod
    def plain(cls, name: str) -> list[Series]:
        """A name that is its own symbol on every day."""
        return [cls(name, name)]


@dataclass(frozen=True)
class ReadPlan:
    """The files to open, each with the name it is read as (by name, then time), the
    sessions of the range and its exact bounds; ``month_days``: for each month file among
    them, the day files it stands for."""

    entries: list[tuple[str, str]]  # (name, key)
    sessions: list[Session]
    start_at: dt.datetime | None
    end_at: dt.datetime | None
    month_days: dict[str, list[str]] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """The keys to open, in order."""
        return [key for _, key in self.entries]

    def without_months(self, months: set[str]) -> list[tuple[str, str]]:
        """The entries with the month files ``months`` replaced by their day files."""
        entries: list[tuple[str, str]] = []
        for name, key in self.entries:
            days = self.month_days[key] if key in months else [key]
            entries.extend((name, day) for day in days)
        return entries


def _symbol_of(key: str) -> str:
    """The symbol a day or month file's key names (``<area>/symbol=S/...``)."""
    return key.split("/")[1].removeprefix("symbol=")


def _day_stamps(
    lake: LakeStore, symbol: str, day_keys: dict[dt.date, str]
) -> dict[dt.date, FileStamp]:
    """The size and version of each present day file of ``symbol`` (``day_keys``: its keys
    by day): a ``stat`` each on a local lake, one LIST per symbol-year on S3."""
    stamps = {}
    if isinstance(lake, LocalStore):
        root = str(lake.root)  # plain strings: a year is 252 stats, pathlib costs more
        for day, key in day_keys.items():
            try:
                status = os.stat(f"{root}/{key}")
            except FileNotFoundError:
                continue
            stamps[day] = (status.st_size, str(status.st_mtime_ns))
        return stamps
    wanted = set(day_keys)
    for year in sorted({day.year for day in wanted}):
        for key, stamp in lake.stamps(f"{LAKE_DIR}/symbol={symbol}/year={year:04d}").items():
            located = partition_of(Path(key))
            if located is not None and located[1] in wanted and key.endswith(f"/{PARTITION_FILE}"):
                stamps[located[1]] = stamp
    return stamps


def plan_read(
    symbols: Sequence[str],
    start: dt.date | dt.datetime | str,
    end: dt.date | dt.datetime | str,
    lake: LakeStore,
    missing: Literal["error", "skip"],
    series_of: Callable[[str], list[Series]] = Series.plain,
) -> ReadPlan:
    """What to open for ``symbols`` from ``start`` to ``end`` (see :class:`ReadPlan`);
    ``series_of`` says which files a name reads on which days (the security master's
    renames and listed life; by default a name is its own symbol throughout)."""
    if not symbols:
        raise ValueError("symbols is empty; name at least one")
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    first, start_at = range_bound(start, "start")
    last, end_at = range_bound(end, "end")
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    sessions = trading_sessions(first, last)
    found: list[tuple[str, dt.date, str]] = []  # (name, first day, key)
    absent, month_days = [], {}
    # A remote lake's pyarrow filesystem, made once (when a whole month is read) for every
    # symbol's month footers.
    filesystem = None
    for series in (item for name in symbols for item in series_of(name)):
        wanted = [session for session in sessions if series.days.covers(session.date)]
        by_month = {
            month: list(group)
            for month, group in itertools.groupby(wanted, key=lambda s: month_of(s.date))
        }
        whole: list[Month] = [
            month for month, group in by_month.items() if len(group) == len(month_sessions(month))
        ]
        day_keys = {session.date: partition_key(series.symbol, session.date) for session in wanted}
        stamps = _day_stamps(lake, series.symbol, day_keys)
        if whole and filesystem is None and not isinstance(lake, LocalStore):
            filesystem = lake_filesystem(lake)
        usable = usable_month_keys(lake, series.symbol, whole, stamps, filesystem)
        for month, group in by_month.items():
            if month in usable:
                found.append((series.name, group[0].date, usable[month]))
                month_days[usable[month]] = [day_keys[session.date] for session in group]
                continue
            for session in group:
                if session.date in stamps:
                    found.append((series.name, session.date, day_keys[session.date]))
                elif series.requires(session.date):
                    absent.append((series.name, session.date))
    order = {name: index for index, name in enumerate(symbols)}
    found.sort(key=lambda item: (order[item[0]], item[1]))
    absent.sort(key=lambda item: (order[item[0]], item[1]))
    if absent and not lake.any(LAKE_DIR):
        raise NoLakeError(
            f"no lake at {lake.uri}: it holds no {LAKE_DIR}/ directory; data_dir must name the "
            "directory (or s3:// location) the workflow writes, e.g. 'data'"
        )
    if absent and missing == "error":
        raise MissingPartitionsError(absent)
    entries = [(name, key) for name, _, key in found]
    return ReadPlan(entries, sessions, start_at, end_at, month_days)
