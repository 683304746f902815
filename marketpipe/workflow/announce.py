"""What a run says before it starts: its scope, what it leaves out because it is not final
yet, a warning about vendor-adjusted lakes, and the one line a bad setting stops it with."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from marketpipe.lake.identity import LakeIdentityMismatch
from marketpipe.lake.storage import describe_partitions
from marketpipe.lake.store_types import MissingBucket
from marketpipe.markettime.finality import describe_final_at
from marketpipe.workflow.config import ConfigError
from marketpipe.workflow.console import CONSOLE
from marketpipe.workflow.planning import FetchJob, describe_not_final, outputs_are_markers
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.tick_planning import TickJob, describe_missing_ticks

EXIT_BAD_SETTINGS = 2  # as every marketpipe command exits on a bad setting


def run_scope_notes(settings: WorkflowSettings) -> list[str]:
    """What a run leaves out because it is not final yet, and why (empty when nothing is)."""
    pending = settings.pending_sessions
    config = settings.config
    if settings.final_sessions:
        if not pending:
            return []
        return [
            f"not fetched yet: {describe_not_final(pending, settings.finality)}; until then "
            "their bars can still change, and the first run after that fetches them"
        ]
    if not pending:
        return [
            f"nothing to fetch: no NYSE session is final between {config.start} and "
            f"{config.end} (end resolved to {settings.end})"
        ]
    first = pending[0]
    final_at = describe_final_at(settings.finality.final_at(first))
    return [
        f"nothing to fetch: no session of {config.start}..{config.end} is final yet; the "
        f"first, {first.date}, is final at {final_at} (bars of unfinished sessions can change)"
    ]


def adjustment_warning(settings: WorkflowSettings) -> str | None:
    """Why a lake of vendor-adjusted bars goes stale, and what to do instead (``None`` for a
    raw lake)."""
    adjustment = settings.adjustment
    if adjustment == "raw":
        return None
    return (
        f"WARNING: alpaca.adjustment is {adjustment!r}: each partition keeps the adjustment the "
        "vendor knew on the day it was fetched, so the lake goes stale with the next split or "
        "dividend and mixes bases. Keep alpaca.adjustment: raw and adjust when reading: "
        "marketpipe.read_bars(..., adjustment='all') or marketpipe export --adjustment all"
    )


def announce_missing(
    settings: WorkflowSettings, jobs: Sequence[FetchJob], tick_jobs: Sequence[TickJob] = ()
) -> None:
    """Name the partitions the run's jobs fetch, when Snakemake cannot (jobs that output
    marker files, on an S3 lake or for a large plan, so ``-n`` would show those), and the
    trades and quotes days (their jobs always output markers)."""
    for line in describe_missing_ticks(tick_jobs):
        print(f"[marketpipe] {line}", file=sys.stderr, flush=True)
    if not jobs or not outputs_are_markers(settings.lake.is_local, jobs):
        return
    missing = sorted(
        (group.symbol, day) for job in jobs for group in job.pending for day in group.missing
    )
    print(f"[marketpipe] missing: {describe_partitions(missing)}", file=sys.stderr, flush=True)


@contextmanager
def stop_on_bad_settings() -> Iterator[None]:
    """Stop the workflow with one line and exit status 2 on a bad config key or value, a bad
    environment variable, or a lake that holds other bars than the config asks for (Snakemake
    would print the exception with the Snakefile's frames)."""
    try:
        yield
    except (ConfigError, LakeIdentityMismatch, MissingBucket) as error:
        print(f"[marketpipe] {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_SETTINGS) from None


def describe_run_scope(settings: WorkflowSettings, jobs: Sequence[FetchJob]) -> str:
    """What this run does, in a line: ``demo 1Min sip raw bars into data: 3 symbols
    (AAPL, MSFT, SPY), 2024-01-02..2024-02-29 (41 sessions): 123 of 123 partitions to fetch
    in 2 job(s)``."""
    config, sessions = settings.config, settings.final_sessions
    symbols = config.symbols
    named = ", ".join(symbols[:3]) + (f" and {len(symbols) - 3} more" if len(symbols) > 3 else "")
    missing = sum(len(group.missing) for job in jobs for group in job.pending)
    span = f"{sessions[0].date}..{sessions[-1].date}" if sessions else f"{config.start}.."
    work = (
        f"{missing:,} of {settings.planned_partitions:,} partitions to fetch in {len(jobs)} job(s)"
        if missing
        else f"all {settings.planned_partitions:,} partitions present"
    )
    plural = "s" if len(symbols) > 1 else ""
    return (
        f"{settings.identity.describe(note_synthetic=False)} into {config.data_dir}: "
        f"{len(symbols)} symbol{plural} ({named}), {span} ({len(sessions):,} sessions): {work}"
    )


def announce_run_scope(settings: WorkflowSettings, jobs: Sequence[FetchJob] = ()) -> None:
    """Print the run's scope (:func:`describe_run_scope`), :func:`run_scope_notes` and
    :func:`adjustment_warning` for the person or scheduler running the workflow."""
    warning = adjustment_warning(settings)
    scope = [describe_run_scope(settings, jobs)] if settings.final_sessions else []
    for line in [*scope, *run_scope_notes(settings), *([warning] if warning else [])]:
        CONSOLE.say(line)
