"""``marketpipe update``: the one command a schedule runs.

It takes the lake's run lock (a second update exits at once, see :data:`EXIT_BUSY`), drops
partitions an earlier release wrote before their session was final, runs the workflow in this
process (without Snakemake's per-directory lock: the lake's lock is the one that matters) and
exits 0 only when every final session of the range is in the lake.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.run_lock import RunInProgress, RunLock
from marketpipe.lake.storage import describe_partitions, partition_key, quarantine_key
from marketpipe.workflow.run import EXIT_BUSY
from marketpipe.workflow.settings import WorkflowSettings, snakemake_config_entries
from marketpipe.workflow.status import missing_partitions, premature_partitions

EXIT_COMPLETE = 0  # every final session of the range is in the lake
EXIT_INCOMPLETE = 1  # the run failed or left final sessions missing (they are named)
EXIT_USAGE = 2  # the config or the command line is wrong; nothing was run
__all__ = ["EXIT_BUSY", "EXIT_COMPLETE", "EXIT_INCOMPLETE", "EXIT_USAGE", "run_update"]


def _snakemake(arguments: list[str]) -> int:
    """Run Snakemake's command line in this process; its exit status."""
    from snakemake.cli import main as snakemake_main

    try:
        snakemake_main(arguments)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


class WorkflowNotFound(FileNotFoundError):
    """The workflow repository (its Snakefile and rules) is not where ``update`` looked."""


def find_snakefile(workflow_dir: Path | None = None) -> Path:
    """The workflow's ``Snakefile``: in ``workflow_dir`` (``--workflow``) or the working
    directory. The workflow is the repository's, not the package's: a ``pip install`` of
    MarketPipe brings the library and the command, a clone brings the workflow."""
    directory = Path(workflow_dir) if workflow_dir is not None else Path.cwd()
    snakefile = directory / "Snakefile"
    rules = directory / "workflow" / "rules"
    if not snakefile.is_file() or not rules.is_dir():
        missing = snakefile if not snakefile.is_file() else rules
        raise WorkflowNotFound(
            f"no MarketPipe workflow in {directory.resolve()} ({missing.name} is missing): run "
            "`marketpipe update` inside a clone of the MarketPipe repository, or pass "
            "--workflow DIR naming one"
        )
    return snakefile.resolve()


def _workflow_arguments(config_file: Path, overrides: Sequence[str], snakefile: Path) -> list[str]:
    # --nolock: the lake's run lock, held around the run, is the lock that matters; Snakemake's
    # own is per working directory and would tie lakes run from one directory together.
    arguments = ["--snakefile", str(snakefile), "--configfile", str(config_file), "--nolock"]
    entries = snakemake_config_entries(overrides)
    return arguments + (["--config", *entries] if entries else [])


def drop_premature_partitions(settings: WorkflowSettings) -> list[tuple[str, dt.date]]:
    """Delete :func:`premature_partitions` (files first, then ledger rows), so this run fetches
    them again; call only while holding the lake's run lock."""
    premature = premature_partitions(settings)
    if not premature:
        return []
    for symbol, day in premature:
        settings.lake.delete(partition_key(symbol, day))
        settings.lake.delete(quarantine_key(symbol, day))
    with CheckpointStore(settings.state_dir) as store:
        for symbol, day in premature:
            store.forget(symbol, [day])
    print(
        f"[marketpipe] {len(premature)} partition(s) had been written before their session "
        f"was final ({describe_partitions(premature)}); they are fetched again",
        file=sys.stderr,
        flush=True,
    )
    return premature


def run_update(
    settings: WorkflowSettings,
    config_file: Path,
    overrides: Sequence[str],
    cores: int,
    snakefile: Path,
) -> int:
    """Run the workflow once under the run lock; return one of the ``EXIT_*`` codes."""
    try:
        with RunLock(settings.state_dir, "marketpipe update", settings.lake):
            drop_premature_partitions(settings)
            arguments = [
                *_workflow_arguments(config_file, overrides, snakefile),
                "--cores",
                str(cores),
            ]
            status = _snakemake(arguments)
    except RunInProgress as busy:
        print(f"marketpipe update: {busy}; this run did nothing", file=sys.stderr, flush=True)
        return EXIT_BUSY
    missing = missing_partitions(settings)
    if missing:
        print(
            f"marketpipe update: INCOMPLETE: {len(missing)} final partition(s) missing: "
            f"{describe_partitions(missing)}; the next run fetches them",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INCOMPLETE
    if status != 0:
        print(f"marketpipe update: the workflow failed (exit {status})", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(
        f"marketpipe update: complete: all {settings.planned_partitions} final partition(s) "
        f"of {settings.config.start}..{settings.end} are in the lake",
        flush=True,
    )
    return EXIT_COMPLETE
