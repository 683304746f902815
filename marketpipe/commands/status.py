"""``marketpipe status``: what the lake holds (every symbol, also outside the config) beside
the config's plan, as text or as JSON for scripts."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from marketpipe.lake.integrity import describe_damage
from marketpipe.lake.securities import Security, read_securities, securities_of
from marketpipe.lake.storage import describe_partitions
from marketpipe.markettime.calendar import new_york_date
from marketpipe.workflow.announce import run_scope_notes
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import (
    SymbolContents,
    SymbolStatus,
    actions_summary,
    damaged_partitions,
    lake_contents,
    lake_status,
    missing_partitions,
    news_summary,
)


def add_status_options(command: argparse.ArgumentParser) -> None:
    """``--require-complete`` and ``--json``."""
    command.add_argument(
        "--require-complete",
        action="store_true",
        help="exit 1, naming them, when final partitions of the range are missing",
    )
    command.add_argument(
        "--json", action="store_true", help="print one JSON object (for scripts) instead"
    )


def run_status(args: argparse.Namespace, settings: WorkflowSettings) -> int:
    """Print the lake's contents and the config's coverage; with ``--require-complete`` exit 1
    when final partitions are missing."""
    held = settings.require_same_lake()
    contents = lake_contents(settings)
    statuses = lake_status(settings)
    missing = missing_partitions(settings) if args.require_complete else []
    if args.json:
        print(json.dumps(status_document(settings, held, contents, statuses), indent=2))
    else:
        _print_status(settings, held, contents, statuses)
    if not args.require_complete:
        return 0
    if missing:
        if not args.json:
            print(
                f"INCOMPLETE: {len(missing)} final partition(s) missing: "
                f"{describe_partitions(missing)}"
            )
        return 1
    if not args.json:
        print(f"complete: all {settings.planned_partitions} final partition(s) are present")
    return 0


def status_document(
    settings: WorkflowSettings,
    held: Any,
    contents: list[SymbolContents],
    statuses: list[SymbolStatus],
) -> dict[str, Any]:
    """Everything ``status`` prints, as one JSON-ready object."""
    identity = held or settings.identity
    missing = missing_partitions(settings)
    return {
        "lake": settings.lake.uri,
        "holds": {
            "vendor": identity.vendor,
            "feed": identity.feed,
            "timeframe": identity.timeframe,
            "adjustment": identity.adjustment,
            "description": identity.describe(),
        },
        "contents": [jsonable(dataclasses.asdict(item)) for item in contents],
        "config": {
            "start": settings.config.start.isoformat(),
            "end": settings.end.isoformat(),
            "planned": settings.planned_partitions,
            "missing": len(missing),
            "complete": not missing,
            "symbols": [jsonable(dataclasses.asdict(status)) for status in statuses],
        },
        "securities": [
            {"symbol": symbol, "security_id": security.security_id, "status": status}
            for symbol, security, status in _securities(settings)
        ],
        "corporate_actions": actions_summary(settings),
        "news": news_summary(settings),
        "damaged": [str(item) for item in damaged_partitions(settings)],
        "not_final": run_scope_notes(settings),
    }


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` ready for JSON: dates and times as ISO text."""
    return {key: _text(value) for key, value in values.items()}


def _text(value: Any) -> Any:
    isoformat: Callable[[], str] | None = getattr(value, "isoformat", None)
    return isoformat() if isoformat is not None else value


def _print_status(
    settings: WorkflowSettings,
    held: Any,
    contents: list[SymbolContents],
    statuses: list[SymbolStatus],
) -> None:
    print(f"lake: {settings.lake.uri} holds {(held or settings.identity).describe()}")
    outside = [item for item in contents if not item.in_config]
    print(
        f"in the lake: {len(contents)} symbol(s)"
        + (f", {len(outside)} not in the config (marked *)" if outside else "")
    )
    if contents:
        print(
            f"  {'symbol':<9} {'first':<10} {'last':<10} {'sessions':>8} {'gaps':>5} "
            f"{'bars':>12} {'size':>9}"
        )
    for item in contents:
        name = item.symbol + ("" if item.in_config else "*")
        size = f"{item.bytes / 1e6:.1f} MB" if item.bytes else "-"
        print(
            f"  {name:<9} {item.first.isoformat():<10} {item.last.isoformat():<10} "
            f"{item.partitions:>8,} {item.gaps:>5,} {item.rows:>12,} {size:>9}"
        )
    print(f"the config asks for {settings.config.start}..{settings.end}:")
    print(
        f"  {'symbol':<8} {'present':>9} {'empty':>6} {'missing':>7} {'bars':>11} "
        f"{'quarantined':>11} {'flagged':>8} {'refreshed':>9}  last bar (New York)"
    )
    for s in statuses:
        print(
            f"  {s.symbol:<8} {s.present:>4}/{s.planned:<4} {s.known_empty:>6} {s.missing:>7} "
            f"{s.rows:>11,} {s.quarantined_rows:>11,} {s.flagged_rows:>8,} {s.refreshed:>9}"
            f"  {s.last_bar_new_york}"
        )
    for line in security_notes(settings):
        print(line)
    print(actions_summary(settings))
    print(news_summary(settings))
    damaged = damaged_partitions(settings)
    if damaged:
        print(
            f"damaged: {len(damaged)} file(s) changed on disk since they were written: "
            f"{describe_damage(damaged)}; `marketpipe update` moves them aside and makes "
            "them again"
        )
    for line in run_scope_notes(settings):
        print(line[0].upper() + line[1:] + ".")


def _securities(settings: WorkflowSettings) -> list[tuple[str, Security, str]]:
    """The config's symbols the security master knows, with each security's status today."""
    today = new_york_date(settings.now)
    known = securities_of(read_securities(settings.lake))
    return [
        (symbol, known[symbol], known[symbol].status(today))
        for symbol in settings.config.symbols
        if symbol in known
    ]


def security_notes(settings: WorkflowSettings) -> list[str]:
    """One line per configured symbol whose security is not plainly active: delisted, yet to
    list, or known under other tickers (see ``marketpipe securities``)."""
    notes = []
    for symbol, security, status in _securities(settings):
        others = [ticker for ticker in security.tickers() if ticker != symbol]
        if status == "active" and not others:
            continue
        known_as = f", also traded as {', '.join(others)}" if others else ""
        notes.append(f"{symbol}: {status}{known_as}")
    return notes
