"""``marketpipe reconcile LAKE_A LAKE_B``: two sources' bars compared minute by minute (or,
``--from-trades``, a lake's bars with bars rolled up from its trades)."""

from __future__ import annotations

import argparse
import datetime as dt
import html
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.compare import (
    ALL_KINDS,
    DEFAULT_PRICE_TOLERANCE,
    DEFAULT_VOLUME_TOLERANCE,
    KINDS,
    NothingToCompareError,
    Reconciliation,
    reconcile_lakes,
)
from marketpipe.lake.compare_actions import ACTION_KINDS
from marketpipe.lake.objects import MissingBucket
from marketpipe.lake.reader import NoLakeError
from marketpipe.lake.storage import DamagedFileError
from marketpipe.workflow.report import REPORT_STYLE

EXIT_AGREE, EXIT_DIFFER, EXIT_USAGE = 0, 1, 2
_SHOWN = 10  # symbol-days with differences listed on the terminal
ONE_SIDED_KINDS = tuple(
    kind for kind in ALL_KINDS if "_missing_in_" in kind and kind not in ACTION_KINDS
)


def add_reconcile_command(commands: argparse._SubParsersAction) -> None:
    """Register ``reconcile`` with the ``marketpipe`` parser."""
    summary = "compare two lakes (two vendors, or feeds) minute by minute; exit 1 on differences"
    command = commands.add_parser("reconcile", help=summary, description=summary)
    command.epilog = (
        "exit codes: 0 the lakes agree: the same partitions, news days and corporate-actions "
        "files, the same splits and cash dividends, and every minute within the tolerances; "
        "1 they differ (the differences are "
        "listed); 2 anything else (bad arguments, nothing to compare, a lake that cannot be "
        "read), said in one line"
    )
    command.add_argument("lake_a", metavar="LAKE_A", help="a lake: directory or s3://bucket/prefix")
    command.add_argument(
        "lake_b",
        metavar="LAKE_B",
        nargs="?",
        help="the lake to compare with LAKE_A (with --from-trades: default LAKE_A)",
    )
    command.add_argument(
        "--from-trades",
        action="store_true",
        help="compare LAKE_A's bars with bars rolled up from the trades stored in LAKE_B "
        "(default: LAKE_A's own), for the symbols whose trades it keeps",
    )
    command.add_argument("--symbols", help="comma-separated (default: every symbol both hold)")
    command.add_argument("--start", type=dt.date.fromisoformat, help="first New York date")
    command.add_argument("--end", type=dt.date.fromisoformat, help="last New York date")
    command.add_argument(
        "--price-tolerance",
        default=DEFAULT_PRICE_TOLERANCE,
        metavar="TOLERANCE",
        help="difference allowed in open, high, low, close and vwap: 0 (the default) exact to "
        "the tick (the cent at $1 and above, $0.0001 below), an amount in dollars (0.01) or "
        "basis points of the price (1bp)",
    )
    command.add_argument(
        "--volume-tolerance",
        type=float,
        default=DEFAULT_VOLUME_TOLERANCE,
        help="relative difference allowed in volume and trade_count "
        f"(default {DEFAULT_VOLUME_TOLERANCE:g})",
    )
    command.add_argument(
        "--allow-missing",
        action="store_true",
        help="compare only what both lakes hold: partitions, news days and corporate actions "
        "held by one side only are not differences",
    )
    command.add_argument("--output", type=Path, help="FILE.parquet: every difference, one a row")
    command.add_argument("--summary", type=Path, help="FILE.parquet: the per-symbol-day summary")
    command.add_argument("--html", type=Path, help="FILE.html: the summary as a page")
    command.set_defaults(handler=run_reconcile)


def run_reconcile(args: argparse.Namespace) -> int:
    """Compare, print the verdict, write the files asked for; 0 agree, 1 differ, 2 error."""
    for option in ("output", "summary"):
        path = getattr(args, option)
        if path is not None and path.suffix.lower() != ".parquet":
            print(
                f"marketpipe reconcile: --{option} {path}: the name must end in .parquet",
                file=sys.stderr,
            )
            return EXIT_USAGE
    symbols = args.symbols.split(",") if args.symbols else None
    if args.lake_b is None and not args.from_trades:
        print(
            "marketpipe reconcile: name LAKE_B, or compare LAKE_A with its own trades "
            "(--from-trades)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        result = reconcile_lakes(
            args.lake_a,
            args.lake_b,
            start=args.start,
            end=args.end,
            symbols=symbols,
            price_tolerance=args.price_tolerance,
            volume_tolerance=args.volume_tolerance,
            allow_missing=args.allow_missing,
            b_source="trades" if args.from_trades else "bars",
        )
        for path, table in ((args.output, result.differences), (args.summary, result.summary)):
            if path is not None:
                write_atomically(path, _parquet(table))
        if args.html is not None:
            write_atomically(args.html, render_reconciliation_html(result).encode())
    except (NothingToCompareError, NoLakeError, MissingBucket, DamagedFileError, ValueError) as exc:
        print(f"marketpipe reconcile: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # "differ" is exit 1 only: any failure is one line and exit 2
        print(f"marketpipe reconcile: failed: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(describe(result))
    return EXIT_AGREE if result.agree else EXIT_DIFFER


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def describe(result: Reconciliation) -> str:
    """The verdict for a terminal: what was compared, differences by kind, where, and why."""
    summary = result.summary.to_pylist()
    compared = sum(_minutes(row) for row in summary)
    matching = sum(row["matching_minutes"] for row in summary)
    lines = [
        f"A: {result.a.uri} ({result.a.vendor}, {result.a.feed})",
        f"B: {result.b.uri} ({result.b.vendor}, {result.b.feed})",
        f"compared {len(summary)} symbol-day(s), {compared:,} minute(s); {matching:,} match "
        f"(prices {result.price_tolerance.describe()}, volume {result.volume_tolerance:g})",
    ]
    if result.agree:
        return "\n".join([*lines, "the lakes agree"])
    counts = ", ".join(f"{kind} {count}" for kind, count in result.counts().items() if count)
    lines.append(f"{result.differences.num_rows} difference(s): {counts}")
    if not result.allow_missing and any(result.counts()[kind] for kind in ONE_SIDED_KINDS):
        lines.append(
            "  partitions, news days or corporate actions held by one lake only are "
            "differences (--allow-missing compares only what both hold)"
        )
    differing = [row for row in summary if row["matching_minutes"] < _minutes(row)]
    for row in differing[:_SHOWN]:
        kinds = ", ".join(f"{kind} {row[kind]}" for kind in KINDS if row[kind])
        note = f" [{row['notes']}]" if row["notes"] else ""
        lines.append(f"  {row['symbol']} {row['date']}: {kinds}{note}")
    if len(differing) > _SHOWN:
        lines.append(f"  and {len(differing) - _SHOWN} more symbol-day(s) (see --summary/--html)")
    return "\n".join(lines)


def _minutes(row: dict) -> int:
    """Minutes in either lake on one symbol-day (a day one lake lacks counts as one)."""
    one_sided = row["day_missing_in_a"] + row["day_missing_in_b"]
    return max(row["minutes_a"] + row["missing_in_a"], one_sided)


def render_reconciliation_html(result: Reconciliation) -> str:
    """One self-contained page: the two sources, the totals and every symbol-day."""
    headers = ["symbol", "date", "minutes A", "minutes B", "matching", *KINDS]
    headers += ["volume B / A", "known reasons"]
    body = []
    for row in result.summary.to_pylist():
        bad = row["matching_minutes"] < _minutes(row)
        ratio = "" if row["volume_ratio"] is None else f"{row['volume_ratio']:.4f}"
        cells = [
            html.escape(row["symbol"]),
            str(row["date"]),
            f"{row['minutes_a']:,}",
            f"{row['minutes_b']:,}",
            f"<span class='{'bad' if bad else ''}'>{row['matching_minutes']:,}</span>",
            *(str(row[kind]) for kind in KINDS),
            ratio,
            html.escape(row["notes"]),
        ]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    counts = ", ".join(f"{kind}: {count}" for kind, count in result.counts().items())
    verdict = "agree" if result.agree else f"differ ({result.differences.num_rows} differences)"
    sources = "".join(
        f"<li>{name}: <code>{html.escape(source.uri)}</code> ({html.escape(source.vendor)}, "
        f"{html.escape(source.feed)})</li>"
        for name, source in (("A", result.a), ("B", result.b))
    )
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MarketPipe reconciliation</title>
<style>{REPORT_STYLE}</style></head><body>
<h1>Reconciliation: the lakes <span class='{"" if result.agree else "bad"}'>{verdict}</span></h1>
<ul>{sources}</ul>
<p>Tolerances: prices {html.escape(result.price_tolerance.describe())}, volume and trade
count {result.volume_tolerance:g} (relative). Differences by kind: {html.escape(counts)}.</p>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table>
</body></html>
"""
