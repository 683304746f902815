"""A point-in-time universe: who was a member on which days, kept in the lake.

``<data_dir>/universe/members.parquet`` holds one row per membership interval (``symbol``,
``first`` and ``last`` day, ``last`` empty while still a member), written by the workflow
from the config's ``universe: {file: ...}`` and read by :func:`members` and the readers: a
member's days outside its membership are neither fetched nor missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import as_store, parquet_bytes, read_table_at
from marketpipe.markettime.spans import DaySpan, DaySpans
from marketpipe.markettime.timeutil import new_york_day

UNIVERSE_KEY = "universe/members.parquet"
UNIVERSE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("first", pa.date32()),
        pa.field("last", pa.date32()),
    ]
)
Membership = Mapping[str, DaySpans]


def membership_table(membership: Membership) -> pa.Table:
    """The membership as the file's rows: by symbol, then first day."""
    rows = [
        {"symbol": symbol, "first": span.first, "last": span.last}
        for symbol in sorted(membership)
        for span in membership[symbol].spans
    ]
    return pa.Table.from_pylist(rows, schema=UNIVERSE_SCHEMA)


def membership_digest(membership: Membership) -> str:
    """A short digest of the membership (the same members on the same days, the same text)."""
    return hashlib.sha256(parquet_bytes(membership_table(membership), {})).hexdigest()[:10]


def publish_membership(lake: LakeStore | Path | str, membership: Membership) -> bool:
    """Write the lake's membership file unless it already holds these bytes; returns
    whether it changed."""
    store = as_store(lake)
    data = parquet_bytes(membership_table(membership), {})
    if store.exists(UNIVERSE_KEY) and store.get(UNIVERSE_KEY) == data:
        return False
    store.put(UNIVERSE_KEY, data, crash_point_name="parquet_write")
    return True


def read_membership(lake: LakeStore | Path | str) -> dict[str, DaySpans]:
    """Each member's days (none when the lake keeps no universe)."""
    store = as_store(lake)
    if not store.exists(UNIVERSE_KEY):
        return {}
    grouped: dict[str, list[DaySpan]] = {}
    for row in read_table_at(store, UNIVERSE_KEY).cast(UNIVERSE_SCHEMA).to_pylist():
        grouped.setdefault(row["symbol"], []).append(DaySpan(row["first"], row["last"]))
    return {symbol: DaySpans.of(spans) for symbol, spans in grouped.items()}


class NoUniverseError(LookupError):
    """The lake keeps no universe: the config has no ``universe:``, or no run used it yet."""


def members(
    start: dt.date | str,
    end: dt.date | str | None = None,
    *,
    data_dir: Path | str = "data",
) -> list[str]:
    """Who was in the lake's universe on ``start`` (New York date), or at any time from
    ``start`` through ``end``: sorted symbols, ready for ``read_bars``, which reads each
    for its membership days without calling the others missing."""
    first = new_york_day(start, "start")
    last = first if end is None else new_york_day(end, "end")
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    membership = read_membership(data_dir)
    if not membership:
        raise NoUniverseError(
            f"{as_store(data_dir).uri} keeps no universe ({UNIVERSE_KEY}): set "
            "'universe: {file: members.csv}' in the config and run the workflow"
        )
    window = DaySpan(first, last)
    return sorted(
        symbol
        for symbol, spans in membership.items()
        if any(span.overlap(window) is not None for span in spans.spans)
    )
