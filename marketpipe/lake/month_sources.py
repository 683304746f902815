"""Month files' layout and the day files each was built from (its footer's "sources").

A month file is current only while every day file it was built from is still the same file,
even one rewritten behind MarketPipe's back with bytes of the same size. The footer names
each source with its sha256, size and md5, and stays a pure function of the day files' bytes
(a rerun writes the same month file). Reads compare, from one ``stat`` (or one listing) per
day file, never by hashing:

- on S3, each day object's ETag with the md5 the footer names (the ETag of an object put
  whole is the md5 of its bytes; any other ETag only makes the month unused);
- on a local disk, each day file's modification time with the month file's: the month is
  built after its days, so a day file modified later than the month file replaced it.

Sizes must match on both.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.lake.ledger_months import Month
from marketpipe.lake.objects import LakeStore, LocalStore, lake_filesystem
from marketpipe.lake.storage import LAKE_DIR, PARTITION_FILE, partition_of
from marketpipe.lake.store_types import FileStamp
from marketpipe.markettime.calendar import trading_sessions

logger = logging.getLogger(__name__)

MONTHLY_DIR = "ohlcv_monthly"
SOURCES_KEY = "marketpipe.sources"  # footer: the day files a month file was built from
MONTH_KEY = "marketpipe.month"


def month_of(day: dt.date) -> Month:
    """The (year, month) of ``day``."""
    return day.year, day.month


def month_key(symbol: str, month: Month) -> str:
    """The key, relative to the lake's root, of one symbol-month's consolidated file."""
    year, number = month
    return f"{MONTHLY_DIR}/symbol={symbol}/year={year:04d}/month={number:02d}/{PARTITION_FILE}"


@functools.cache
def month_sessions(month: Month) -> tuple[dt.date, ...]:
    """Every NYSE session of ``month`` (a full scan asks about thousands of months)."""
    first = dt.date(month[0], month[1], 1)
    last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return tuple(session.date for session in trading_sessions(first, last))


@dataclass(frozen=True)
class MonthSource:
    """One day file a month file was built from: its sha256, size and md5."""

    day: dt.date
    sha256: str
    size: int
    md5: str | None = None  # None: a month file written before md5s were recorded


def sources_digest(hashes: Mapping[dt.date, str]) -> str:
    """The sha256 of a month's day files' hashes, in day order (what the ledger compares)."""
    text = "".join(f"{day.isoformat()} {sha}\n" for day, sha in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def encode_sources(sources: Sequence[MonthSource]) -> str:
    """The footer's value naming ``sources``."""
    return json.dumps([[s.day.isoformat(), s.sha256, s.size, s.md5] for s in sources])


def decode_sources(metadata: Mapping[bytes, bytes] | None) -> list[MonthSource] | None:
    """The sources a month file's footer names, or ``None`` if it names none."""
    raw = (metadata or {}).get(SOURCES_KEY.encode())
    if raw is None:
        return None
    try:
        return [
            MonthSource(dt.date.fromisoformat(item[0]), item[1], int(item[2]), *item[3:4])
            for item in json.loads(raw)
        ]
    except (ValueError, TypeError, IndexError):
        return None


def sources_match(
    sources: Sequence[MonthSource],
    day_stamps: Mapping[dt.date, FileStamp],
    month_stamp: FileStamp | None,
    local: bool,
) -> bool:
    """Whether ``sources`` are exactly the present day files (``day_stamps``: every one
    named, each with the size it had and not replaced since; see the module's text).
    ``month_stamp``: the month file's own (a local lake compares modification times)."""
    if {source.day for source in sources} != set(day_stamps):
        return False
    for source in sources:
        size, version = day_stamps[source.day]
        if size != source.size:
            return False
        if local:
            if month_stamp is None or int(version) > int(month_stamp[1]):
                return False
        elif source.md5 is None or version != source.md5:
            return False
    return True


def month_file_stamp(lake: LakeStore, symbol: str, month: Month) -> FileStamp | None:
    """The month file's own stamp (``None`` when there is none)."""
    key = month_key(symbol, month)
    return lake.stamps(key.rsplit("/", 1)[0]).get(key)


def month_day_stamps(lake: LakeStore, symbol: str, month: Month) -> dict[dt.date, FileStamp]:
    """The stamps of ``symbol``'s day files in ``month`` (one listing of the month)."""
    prefix = f"{LAKE_DIR}/symbol={symbol}/year={month[0]:04d}/month={month[1]:02d}"
    stamps = {}
    for key, stamp in lake.stamps(prefix).items():
        located = partition_of(Path(key))
        if located is not None and key.endswith(f"/{PARTITION_FILE}"):
            stamps[located[1]] = stamp
    return stamps


def month_files(lake: LakeStore, symbol: str | None = None) -> set[tuple[str, Month]]:
    """Every (symbol, month) with a month file (of ``symbol`` only, if given), from one
    listing."""
    prefix = MONTHLY_DIR if symbol is None else f"{MONTHLY_DIR}/symbol={symbol}"
    found = set()
    for key in lake.list(prefix):
        parts = key.split("/")
        if len(parts) != 5 or parts[4] != PARTITION_FILE:
            continue
        try:
            month = (int(parts[2].removeprefix("year=")), int(parts[3].removeprefix("month=")))
        except ValueError:
            continue
        found.add((parts[1].removeprefix("symbol="), month))
    return found


def present_months(lake: LakeStore, symbol: str) -> set[Month]:
    """The months of ``symbol`` that have a month file, from one listing."""
    return {month for _, month in month_files(lake, symbol)}


def read_month_sources(
    lake: LakeStore, key: str, filesystem: tuple[Any, str] | None = None
) -> list[MonthSource] | None:
    """The sources named in the footer of the month file at ``key`` (``None``: no such
    file, or a footer that cannot be read: the day files are read instead). ``filesystem``:
    a remote lake's pyarrow filesystem and root, when the caller has one."""
    try:
        if isinstance(lake, LocalStore):
            metadata = pq.read_metadata(lake.path(key)).metadata
        else:
            remote, root = filesystem or lake_filesystem(lake)
            with remote.open_input_file(f"{root}/{key}") as handle:
                metadata = pq.read_metadata(handle).metadata
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:
        logger.warning("month file %s/%s unreadable, day files used: %s", lake.uri, key, exc)
        return None
    return decode_sources(metadata)


def usable_month_keys(
    lake: LakeStore,
    symbol: str,
    months: Sequence[Month],
    day_stamps: Mapping[dt.date, FileStamp],
    filesystem: tuple[Any, str] | None = None,
) -> dict[Month, str]:
    """Of ``months`` (whole months a read covers), those whose month file is current: it
    names every session of the month, and each day file is present and the same file it
    was built from (:func:`sources_match`; ``day_stamps``: the stamps of the present day
    files). ``filesystem``: see :func:`read_month_sources`."""
    if not months:
        return {}
    present = None
    if not isinstance(lake, LocalStore):
        present = present_months(lake, symbol)  # one listing, not a request per month
    usable = {}
    for month in months:
        sessions = month_sessions(month)
        if present is not None and month not in present:
            continue
        if not sessions or any(day not in day_stamps for day in sessions):
            continue
        key = month_key(symbol, month)
        sources = read_month_sources(lake, key, filesystem)
        if sources is None:
            continue
        local = isinstance(lake, LocalStore)
        month_stamp = _local_stamp(lake, key) if local else None
        days = {day: day_stamps[day] for day in sessions}
        if sources_match(sources, days, month_stamp, local):
            usable[month] = key
    return usable


def _local_stamp(lake: LakeStore, key: str) -> FileStamp | None:
    try:
        status = os.stat(f"{lake.root}/{key}")  # type: ignore[attr-defined]
    except FileNotFoundError:
        return None
    return status.st_size, str(status.st_mtime_ns)
