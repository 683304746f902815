"""MarketPipe: plan, inspect, verify and report on a local market-data lake."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from marketpipe.commands import status as status_command
from marketpipe.commands.common import (
    CommandError,
    add_config_options,
    load_command_settings,
)
from marketpipe.commands.consolidate import add_consolidate_command
from marketpipe.commands.demo import add_demo_command
from marketpipe.commands.export import add_export_options, run_export_command
from marketpipe.commands.migrate import migrate_lake
from marketpipe.commands.plan import build_plan
from marketpipe.commands.plot import add_plot_options, chart_path, plot_bars
from marketpipe.commands.reconcile import add_reconcile_command
from marketpipe.commands.refresh import refresh_partitions
from marketpipe.commands.securities import add_securities_options, run_securities
from marketpipe.commands.update import (
    EXIT_BUSY,
    EXIT_USAGE,
    update,
)
from marketpipe.commands.verify import verify_lake
from marketpipe.foundation.version import VERSION
from marketpipe.lake.identity import LakeIdentityMismatch
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.objects import MissingBucket
from marketpipe.lake.reader import NoLakeError
from marketpipe.lake.reindex import reindex
from marketpipe.lake.run_lock import RunInProgress
from marketpipe.lake.securities import NoSecurityMasterError
from marketpipe.lake.storage import describe_partitions
from marketpipe.simulator.cli import main as simulator_main
from marketpipe.workflow.announce import run_scope_notes
from marketpipe.workflow.planning import symbols_label
from marketpipe.workflow.report import make_report
from marketpipe.workflow.settings import ConfigError, WorkflowSettings
from marketpipe.workflow.status import (
    LakeNotFoundError,
    require_lake,
)


def _settings(args: argparse.Namespace) -> WorkflowSettings:
    return load_command_settings(args.config, args.set, read_only=args.command in READING)


# Commands that only read the lake: they work on a lake this user cannot write.
READING = ("plan", "status", "verify", "export", "plot", "securities")


def _print_not_final(settings: WorkflowSettings) -> None:
    """Name the sessions of the range that are not final yet, and when each will be."""
    for line in run_scope_notes(settings):
        print(line[0].upper() + line[1:] + ".")


def _duration(minutes: float) -> str:
    """``under a minute``, ``12 min``, ``2.5 h``: an estimate people read."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


def run_plan(args: argparse.Namespace) -> int:
    """Print the missing partitions by job (symbols and month), with their cost."""
    settings = _settings(args)
    plan = build_plan(settings)
    actions = (
        f"Today's corporate-actions check: about {plan.actions_requests} request(s), plus one "
        "per new cash dividend (for the close before its ex-date)."
    )
    news = (
        f"News: {plan.news_missing} day(s) to fetch"
        + (" and today's recheck" if plan.news_requests and not plan.news_missing else "")
        + f", about {plan.news_requests} request(s)."
    )
    ticks = (
        " and ".join(f"{count} {kind} day(s)" for kind, count in plan.tick_days.items())
        + f" to fetch: about {plan.tick_rows:,} prints in {plan.tick_requests:,} request(s)."
    )
    if not plan.jobs:
        if plan.planned_partitions:
            print(
                f"Nothing to fetch: all {plan.planned_partitions} planned partitions are present."
            )
        if plan.actions_requests:
            print(actions)
        if plan.news_requests:
            print(news)
        if plan.tick_days:
            print(ticks[0].upper() + ticks[1:])
        _print_not_final(settings)
        return 0
    print(
        f"{'symbols':<24} {'month':<8} {'missing':>7} {'streams':>7} {'~bars':>9} {'~requests':>9}"
    )
    for job in plan.jobs:
        print(
            f"{symbols_label(job.symbols):<24} {job.month:<8} {job.missing:>7} {job.runs:>7} "
            f"{job.estimated_bars:>9,} {job.estimated_requests:>9}"
        )
    print(
        f"{plan.missing_partitions} of {plan.planned_partitions} partitions missing in "
        f"{len(plan.jobs)} job(s): about {plan.estimated_requests} request(s), "
        f"{_duration(plan.estimated_minutes)} at {plan.requests_per_minute} requests/min"
        + (f", and {plan.file_reads} flat file read(s)" if plan.file_reads else "")
    )
    if plan.actions_requests:
        print(actions)
    if plan.news_requests:
        print(news)
    if plan.tick_days:
        print(ticks[0].upper() + ticks[1:])
    _print_not_final(settings)
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print what the lake holds and the config's coverage (:mod:`.commands.status`)."""
    return status_command.run_status(args, _settings(args))


def run_plot(args: argparse.Namespace) -> int:
    """Draw one symbol's prices and volume from the lake (:mod:`.commands.plot`)."""
    end = args.end or args.start
    try:
        output = chart_path(args.symbol.upper(), args.start, end, args.output)
        drawn, kind = plot_bars(_settings(args), args.symbol.upper(), args.start, end, output)
    except (NoLakeError, ValueError) as exc:
        print(f"marketpipe plot: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {output}: {drawn:,} {kind} of {args.symbol.upper()}")
    return 0


def run_securities_command(args: argparse.Namespace) -> int:
    """Print which security each symbol names (:mod:`.commands.securities`)."""
    try:
        return run_securities(args, _settings(args))
    except NoSecurityMasterError as exc:
        print(f"marketpipe securities: {exc}", file=sys.stderr)
        return 1


def run_update_command(args: argparse.Namespace) -> int:
    """Run the workflow once, for a schedule; see marketpipe.commands.update for exit codes."""
    return update(args.config, args.set, args.cores, args.workflow)


def _chosen_symbols(args: argparse.Namespace, settings: WorkflowSettings) -> list[str]:
    """``--symbols A,B``, else the config's symbols."""
    return args.symbols.split(",") if args.symbols else list(settings.config.symbols)


def run_refresh(args: argparse.Namespace) -> int:
    """Fetch published sessions again and replace the partitions the vendor changed."""
    settings = _settings(args)
    symbols = _chosen_symbols(args, settings)
    end = args.end or args.start
    try:
        result = refresh_partitions(settings, symbols, args.start, end, args.reason)
    except RunInProgress as busy:
        print(f"marketpipe refresh: {busy}; nothing was refreshed", file=sys.stderr)
        return EXIT_BUSY
    for item in result.replaced:
        print(f"replaced {item.symbol} {item.day}: {item.old_rows} -> {item.new_rows} rows")
    print(
        f"refreshed {args.start}..{end}: {len(result.replaced)} partition(s) replaced, "
        f"{result.unchanged} unchanged"
    )
    if result.not_in_lake:
        waiting = describe_partitions(result.not_in_lake)
        print(f"not in the lake yet (the workflow fetches them): {waiting}")
    for symbol, error in result.failed.items():
        print(f"FAILED {symbol}: {error}", file=sys.stderr)
    return 1 if result.failed else 0


def run_reindex(args: argparse.Namespace) -> int:
    """Make the ledger agree with the lake: record unknown files, forget missing ones."""
    settings = _settings(args)
    require_lake(settings)
    try:
        lock = settings.run_lock("marketpipe reindex")
        with lock, CheckpointStore(settings.state_dir) as store:
            result = reindex(store, settings.lake)
    except RunInProgress as busy:
        print(f"marketpipe reindex: {busy}; nothing was changed", file=sys.stderr)
        return EXIT_BUSY
    print(
        f"reindexed {settings.lake.uri}: {result.adopted} partition(s) recorded, "
        f"{result.dropped} forgotten (file gone), {result.unchanged} already known"
    )
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """Rewrite files of earlier releases in the current format."""
    settings = _settings(args)
    require_lake(settings)
    try:
        result = migrate_lake(settings)
    except RunInProgress as busy:
        print(f"marketpipe migrate: {busy}; nothing was migrated", file=sys.stderr)
        return EXIT_BUSY
    print(
        f"migrated {result.partitions} partition file(s) and {result.quarantine_files} "
        f"quarantine file(s); {result.current} already current"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write a symbol and date range of the lake to one Parquet or CSV file, or a catalog."""
    settings = _settings(args)
    return run_export_command(args, settings, _chosen_symbols(args, settings))


def run_verify(args: argparse.Namespace) -> int:
    """Check every partition; exit 1 naming each bad file."""
    result = verify_lake(_settings(args))
    for problem in result.problems:
        print(f"BAD {problem.path}: {problem.problem}")
    verdict = "OK" if not result.problems else f"{len(result.problems)} problem(s)"
    extra = [
        f"{count} {what} file(s)"
        for count, what in (
            (result.actions_checked, "corporate-actions"),
            (result.news_checked, "news"),
            (result.months_checked, "month"),
            (result.ticks_checked, "trades/quotes"),
        )
        if count
    ]
    counted = [f"{result.checked} partition file(s)", *extra]
    listed = ", ".join(counted[:-1]) + " and " + counted[-1] if len(counted) > 1 else counted[0]
    print(f"verified {listed}: {verdict}")
    return 1 if result.problems else 0


def run_report(args: argparse.Namespace) -> int:
    """Write the coverage PNG and HTML page."""
    png, page = make_report(_settings(args), args.output)
    print(f"wrote {png}\nwrote {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``marketpipe`` argument parser."""
    parser = argparse.ArgumentParser(prog="marketpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"marketpipe {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, summary in (
        ("plan", run_plan, "missing partitions by symbol and month, with requests and time"),
        ("status", run_status, "what the lake holds, and the config's coverage per symbol"),
        ("verify", run_verify, "re-hash partitions against the ledger; exit 1 on problems"),
        ("report", run_report, "coverage picture (PNG) and HTML page with the latest run"),
        ("update", run_update_command, "run the workflow once, for a schedule (cron, systemd)"),
        ("refresh", run_refresh, "fetch published sessions again; replace what the vendor changed"),
        ("migrate", run_migrate, "rewrite files of earlier releases in the current format"),
        ("reindex", run_reindex, "rebuild the ledger from the lake's files (LIST + footers)"),
        ("export", run_export, "a symbol and date range into one Parquet or CSV file"),
        ("plot", run_plot, "a price and volume chart of one symbol, from the lake"),
        ("securities", run_securities_command, "which security each symbol names, and its tickers"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        add_config_options(command)
        command.set_defaults(handler=handler)
        if name == "report":
            command.add_argument(
                "--output", type=Path, help="directory for the files (default: DATA_DIR/_reports)"
            )
        if name == "status":
            status_command.add_status_options(command)
        if name == "plot":
            add_plot_options(command)
        if name == "securities":
            add_securities_options(command)
        if name in ("refresh", "export"):
            command.add_argument("--symbols", help="comma-separated (default: the config's)")
            command.add_argument(
                "--start", type=dt.date.fromisoformat, required=True, help="first New York date"
            )
            command.add_argument(
                "--end", type=dt.date.fromisoformat, help="last New York date (default: --start)"
            )
        if name == "export":
            add_export_options(command)
        if name == "refresh":
            command.add_argument(
                "--reason", default="refresh requested", help="recorded in the ledger's history"
            )
        if name == "update":
            command.epilog = (
                "exit codes: 0 every final session of the range is in the lake; 1 the run "
                "failed or left final sessions missing (named); 2 bad config or arguments; "
                "75 another run holds the lake (nothing done, try later); 76 the run lost its S3 "
                "lake's lease to another controller mid-run and stopped writing"
            )
            command.add_argument("--cores", type=int, default=2, help="jobs at a time (default: 2)")
            command.add_argument(
                "--workflow",
                type=Path,
                metavar="DIR",
                help="the MarketPipe workflow repository (Snakefile, workflow/rules, profiles); "
                "default: the working directory",
            )
    add_consolidate_command(commands)
    add_reconcile_command(commands)
    add_demo_command(commands)
    commands.add_parser(
        "simulator", help="run the Alpaca-compatible simulator (see its --help)", add_help=False
    )
    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marketpipe`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        return simulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # inside the try: a reader that left shows here, not at exit
        # Free Arrow's objects while Arrow is alive: its worker threads torn down during the
        # interpreter's final teardown can abort the process (apache/arrow#34314).
        gc.collect()
        return code
    except (
        CommandError,
        ConfigError,
        LakeNotFoundError,
        MissingBucket,
        LakeIdentityMismatch,
    ) as exc:
        print(f"marketpipe {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`marketpipe status | head -3`): stop quietly, as a pipe
        # writer killed by SIGPIPE would, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
