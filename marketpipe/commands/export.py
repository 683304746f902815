"""``marketpipe export``: a symbol and date range of the lake as one Parquet or CSV file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.reader import read_bars
from marketpipe.workflow.settings import WorkflowSettings

FORMATS = {".parquet": "parquet", ".csv": "csv"}


def export_bars(
    settings: WorkflowSettings,
    symbols: list[str],
    first: dt.date,
    last: dt.date,
    output: Path,
    *,
    session: Literal["extended", "regular"] = "extended",
    timeframe: str | None = None,
    skip_missing: bool = False,
    adjustment: str = "raw",
    timezone: str = "UTC",
    decimals: int | None = None,
) -> int:
    """Write the bars to ``output`` (its suffix picks the format) atomically; return the rows.

    Missing partitions fail the export, naming them, unless ``skip_missing``;
    ``adjustment`` is :func:`~marketpipe.lake.reader.read_bars`'s. ``timezone`` (an IANA
    name) is the clock the timestamps are written in, with their offset (the instants are
    the same); ``decimals`` rounds prices and vwap (CSV then reads ``187.15``, not
    ``187.14999999999998``).
    """
    kind = FORMATS.get(output.suffix.lower())
    if kind is None:
        raise ValueError(f"{output}: the file name must end in .parquet or .csv")
    table: pa.Table = read_bars(
        symbols,
        first,
        last,
        data_dir=settings.lake,
        session=session,
        timeframe=timeframe,
        missing="skip" if skip_missing else "error",
        adjustment=adjustment,
    )
    table = presented(table, timezone, decimals)
    sink = pa.BufferOutputStream()
    if kind == "parquet":
        pq.write_table(table, sink, compression="zstd")
    else:
        csv.write_csv(table, sink)
    write_atomically(output, sink.getvalue().to_pybytes())
    return table.num_rows


def presented(table: pa.Table, timezone: str, decimals: int | None) -> pa.Table:
    """``table`` with its timestamps in ``timezone`` and its prices rounded to ``decimals``."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"--timezone {timezone!r} is not a time zone name; use e.g. UTC or America/New_York"
        ) from None
    if decimals is not None and not 0 <= decimals <= 12:
        raise ValueError(f"--decimals {decimals}: use 0 to 12 digits after the point")
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.timestamp(field.type.unit, str(zone)))
        elif decimals is not None and pa.types.is_floating(field.type):
            column = pc.round(column, decimals)
        columns.append(column)
    # Field by field, so the lake's nullability and metadata survive the conversion.
    schema = pa.schema(
        [field.with_type(column.type) for field, column in zip(table.schema, columns, strict=True)],
        metadata=table.schema.metadata,
    )
    return pa.Table.from_arrays(columns, schema=schema)
