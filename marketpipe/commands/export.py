"""``marketpipe export``: a symbol and date range of the lake as one Parquet or CSV file, or
as a NautilusTrader catalog (``--format nautilus``, see :mod:`marketpipe.bridges.nautilus`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq

from marketpipe.bridges.common import BridgeUnavailable
from marketpipe.bridges.nautilus import write_catalog
from marketpipe.foundation.files import write_atomically
from marketpipe.lake.actions import MissingActionsError
from marketpipe.lake.adjustment import ADJUSTMENTS
from marketpipe.lake.reader import MissingPartitionsError, NoLakeError, read_bars
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


def run_export_command(
    args: argparse.Namespace, settings: WorkflowSettings, symbols: list[str]
) -> int:
    """``marketpipe export`` with its parsed ``args``: exit 1 naming what stopped it."""
    end = args.end or args.start
    if args.format == "nautilus":
        unused = [
            option
            for option, value in (
                ("--timeframe", args.timeframe),
                ("--skip-missing", args.skip_missing),
                ("--decimals", args.decimals),
                ("--timezone", args.timezone != "UTC"),
            )
            if value
        ]
        if unused:
            print(
                f"marketpipe export: {', '.join(unused)} do(es) not apply to --format nautilus "
                "(a catalog holds the lake's bars in UTC nanoseconds, at the instrument's "
                "precision); leave it out",
                file=sys.stderr,
            )
            return 2
    try:
        if args.format == "nautilus":
            catalog = write_catalog(
                args.output,
                symbols,
                args.start,
                end,
                data_dir=settings.lake,
                adjustment=args.adjustment,
                session=args.session,
                venue=args.venue,
            )
            print(
                f"wrote a NautilusTrader catalog of {catalog.bars:,} bar(s) of {len(symbols)} "
                f"symbol(s), {args.start}..{end}, to {args.output} (ts_event = each bar's "
                f"close; {catalog.widened:,} bar(s) with high/low widened to hold open/close)"
            )
            return 0
        rows = export_bars(
            settings,
            symbols,
            args.start,
            end,
            args.output,
            session=args.session,
            timeframe=args.timeframe,
            skip_missing=args.skip_missing,
            adjustment=args.adjustment,
            timezone=args.timezone,
            decimals=args.decimals,
        )
    except (
        MissingPartitionsError,
        MissingActionsError,
        NoLakeError,
        BridgeUnavailable,
        FileExistsError,
        ValueError,
    ) as exc:
        print(f"marketpipe export: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {rows:,} bar(s) of {len(symbols)} symbol(s), {args.start}..{end}, to {args.output}"
    )
    return 0


def add_export_options(command: argparse.ArgumentParser) -> None:
    """The ``export`` command's own options (symbols and dates are shared with refresh)."""
    command.add_argument(
        "--output",
        type=Path,
        required=True,
        help="FILE.parquet or FILE.csv; a new directory for --format nautilus",
    )
    command.add_argument(
        "--format",
        choices=["file", "nautilus"],
        default="file",
        help="file (Parquet or CSV, by the output's suffix; default) or nautilus (a "
        "NautilusTrader ParquetDataCatalog, bars stamped at their close)",
    )
    command.add_argument(
        "--venue", help="the catalog's venue (default: the vendor, ALPACA or POLYGON)"
    )
    command.add_argument("--session", choices=["extended", "regular"], default="extended")
    command.add_argument("--timeframe", help="roll up to wider bars: 5Min, 1Hour, 1Day")
    command.add_argument(
        "--skip-missing",
        action="store_true",
        help="export what is there instead of failing on missing partitions",
    )
    command.add_argument(
        "--adjustment",
        choices=list(ADJUSTMENTS),
        default="raw",
        help="apply the stored corporate actions: split (prices and volume), dividend "
        "(prices), all (both); default raw, as stored",
    )
    command.add_argument(
        "--timezone",
        default="UTC",
        help="write timestamps in this time zone, with their offset (default UTC; "
        "e.g. America/New_York)",
    )
    command.add_argument("--decimals", type=int, help="round prices and vwap to this many decimals")
