"""``marketpipe securities [SYMBOL ...]``: which security each of the lake's symbols names.

For each symbol: the security's id and name, whether it is active, delisted (on the first
day it no longer traded) or yet to list, and the tickers it traded under with their dates;
``--json`` prints the master's rows for scripts.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys

from marketpipe.commands.status import jsonable
from marketpipe.lake.securities import (
    Security,
    intervals_of,
    read_master,
    securities_of,
)
from marketpipe.markettime.calendar import new_york_date
from marketpipe.workflow.settings import WorkflowSettings


def add_securities_options(command: argparse.ArgumentParser) -> None:
    """``[SYMBOL ...] [--json]``."""
    command.add_argument("symbols", nargs="*", help="symbols of the lake (default: all)")
    command.add_argument("--json", action="store_true", help="the master's rows as JSON")


def run_securities(args: argparse.Namespace, settings: WorkflowSettings) -> int:
    """Print the securities of ``args.symbols`` (every symbol of the lake by default); exit 1
    when one is not in the master."""
    rows = intervals_of(read_master(settings.lake))
    known = securities_of(rows)
    asked = [symbol.upper() for symbol in args.symbols] or list(known)
    unknown = [symbol for symbol in asked if symbol not in known]
    if args.json:
        chosen = [row for row in rows if row.symbol in asked]
        print(json.dumps([jsonable(dataclasses.asdict(row)) for row in chosen], indent=2))
    else:
        today = new_york_date(settings.now)
        print(f"lake: {settings.lake.uri}: the securities of {len(known)} symbol(s)")
        for symbol in asked:
            if symbol in known:
                print("\n".join(describe_security(known[symbol], today)))
    for symbol in unknown:
        print(
            f"marketpipe securities: {symbol} is not in the security master (it has "
            f"{', '.join(known) or 'no symbol'}; a run adds the config's symbols)",
            file=sys.stderr,
        )
    return 1 if unknown else 0


def describe_security(security: Security, today: dt.date) -> list[str]:
    """A symbol's security on one line, then one line per ticker it traded under."""
    listed = f", listed {security.listed.isoformat()}" if security.listed else ""
    name = f" {security.name}" if security.name else ""
    source = security.intervals[0]
    lines = [
        f"{security.symbol}: {security.security_id}{name}: {security.status(today)}{listed} "
        f"({source.vendor} {source.endpoint}, asked {source.asked_on.isoformat()})"
    ]
    for interval in security.intervals:
        lines.append(
            f"  {interval.ticker:<8} {_span(interval.valid_from, interval.valid_to)}".rstrip()
        )
    return lines


def _span(start: dt.date | None, end: dt.date | None) -> str:
    """``2012-05-18 .. 2022-06-08``, ``since 2022-06-09``, ``until 2022-06-08`` or nothing."""
    if start and end:
        return f"{start.isoformat()} .. {end.isoformat()}"
    if start:
        return f"since {start.isoformat()}"
    return f"until {end.isoformat()}" if end else ""
