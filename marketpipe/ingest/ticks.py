"""One symbol-day of trades or quotes from the vendor into the lake, page by page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.models import labelled_rows
from marketpipe.connectors.ticks import TicksClient, TicksQuery
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import SYMBOL_COLUMN, WrittenFile
from marketpipe.lake.ticks import write_tick_day
from marketpipe.markettime.calendar import new_york_midnight

_LAST_MICROSECOND = dt.timedelta(microseconds=1)


def fetch_tick_day(
    client: TicksClient,
    lake: LakeStore | Path | str,
    symbol: str,
    day: dt.date,
    *,
    feed: str = "sip",
    asof: dt.date | None = None,
    vendor: str | None = None,
    ticker: str | None = None,
) -> WrittenFile:
    """Fetch ``symbol``'s prints of the New York ``day`` (midnight to midnight) and publish
    them as its day file, streaming: memory holds a page and a row group, not the day.
    ``vendor`` names the source in the file's footer (default: the client's); ``ticker`` is
    what the security traded as that day, when not ``symbol`` (a rename: its rows are
    stored under ``symbol``)."""
    asked = ticker or symbol
    query = TicksQuery(
        symbols=(asked,),
        start=new_york_midnight(day),
        end=new_york_midnight(day + dt.timedelta(days=1)) - _LAST_MICROSECOND,
        feed=feed,
        asof=asof,
    )
    metadata = {"marketpipe.vendor": vendor or client.vendor, "marketpipe.feed": feed}

    def pages() -> Iterator[pa.Table]:
        for table in client.fetch_batch(query):
            foreign = pc.sum(pc.not_equal(table[SYMBOL_COLUMN], asked)).as_py() or 0
            if foreign:
                raise ResponseFormatError(f"{client.kind} of {asked} {day}: rows of another symbol")
            yield table if asked == symbol else labelled_rows(table, symbol)

    return write_tick_day(lake, client.kind, symbol, day, pages(), metadata)
