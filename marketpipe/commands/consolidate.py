"""``marketpipe consolidate``: bring the lake's month files up to date (see
:mod:`marketpipe.lake.consolidated`)."""

from __future__ import annotations

import argparse
import sys
import time

from marketpipe.commands.common import add_config_options, load_command_settings
from marketpipe.lake.consolidated import ConsolidationReport, consolidate
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.run_lock import RunInProgress
from marketpipe.workflow.run import EXIT_BUSY
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import require_lake


def consolidate_lake(
    settings: WorkflowSettings, symbols: list[str] | None = None
) -> ConsolidationReport:
    """Build, rebuild or remove the month files of ``symbols`` (default: every symbol the
    ledger knows), holding the lake's run lock."""
    require_lake(settings)
    with settings.run_lock("marketpipe consolidate"), CheckpointStore(settings.state_dir) as store:
        return consolidate(settings.lake, store, symbols)


def run_consolidate(args: argparse.Namespace) -> int:
    """Print what was built; exit 1 naming months whose day files did not match the ledger."""
    settings = load_command_settings(args.config, args.set)
    symbols = args.symbols.split(",") if args.symbols else None
    started = time.perf_counter()
    try:
        report = consolidate_lake(settings, symbols)
    except RunInProgress as busy:
        print(f"marketpipe consolidate: {busy}; nothing was changed", file=sys.stderr)
        return EXIT_BUSY
    for (symbol, (year, month)), reason in sorted(report.refused.items()):
        print(f"NOT BUILT {symbol} {year:04d}-{month:02d}: {reason}")
    print(
        f"consolidated {settings.lake.uri} in {time.perf_counter() - started:.1f} s: "
        f"{len(report.built)} month file(s) built, {report.current} already current, "
        f"{len(report.removed)} removed, {len(report.refused)} not built"
    )
    if report.refused:
        print(
            "months not built are read from their day files; `marketpipe verify` names "
            "what is wrong with them, `marketpipe update` repairs it",
            file=sys.stderr,
        )
    return 1 if report.refused else 0


def add_consolidate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``consolidate`` with the ``marketpipe`` parser."""
    summary = "build the one-file-per-symbol-month read layer from the day files (fast reads)"
    command = commands.add_parser("consolidate", help=summary, description=summary)
    command.epilog = (
        "exit codes: 0 every complete symbol-month has a current month file; 1 some were not "
        "built (named; reads use their day files); 2 bad config; 75 another run holds the lake"
    )
    add_config_options(command)
    command.add_argument("--symbols", help="comma-separated (default: every symbol in the lake)")
    command.set_defaults(handler=run_consolidate)
