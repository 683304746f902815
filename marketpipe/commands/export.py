"""``marketpipe export``: a symbol and date range of the lake as one Parquet or CSV file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import pyarrow as pa
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
) -> int:
    """Write the bars to ``output`` (its suffix picks the format) atomically; return the rows.

    Missing partitions fail the export, naming them, unless ``skip_missing``;
    ``adjustment`` is :func:`~marketpipe.lake.reader.read_bars`'s.
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
    sink = pa.BufferOutputStream()
    if kind == "parquet":
        pq.write_table(table, sink, compression="zstd")
    else:
        csv.write_csv(table, sink)
    write_atomically(output, sink.getvalue().to_pybytes())
    return table.num_rows
