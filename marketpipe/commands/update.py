"""``marketpipe update``: the one command a schedule runs.

It takes the lake's run lock (a second update exits at once, see :data:`EXIT_BUSY`), drops
partitions an earlier release wrote before their session was final, runs the workflow in this
process (without Snakemake's per-directory lock: the lake's lock is the one that matters) and
exits 0 only when every final session of the range is in the lake.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from marketpipe.commands.common import DEFAULT_CONFIG, CommandError, load_command_settings
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.integrity import describe_damage
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.run_lock import RunInProgress
from marketpipe.lake.storage import LAKE_DIR, describe_partitions, partition_key, quarantine_key
from marketpipe.observability.logs import current_run_id, hand_over_run
from marketpipe.observability.summary import latest_run_summary
from marketpipe.workflow.alerting import alert_unstarted_run, policy_from_raw, run_summarised
from marketpipe.workflow.announce import run_scope_notes
from marketpipe.workflow.config import ConfigError
from marketpipe.workflow.config_loading import snakemake_config_entries
from marketpipe.workflow.run import EXIT_BUSY, EXIT_INTERRUPTED, EXIT_LEASE_LOST
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import (
    damaged_partitions,
    missing_partitions,
    premature_partitions,
)

EXIT_COMPLETE = 0  # every final session of the range is in the lake
EXIT_INCOMPLETE = 1  # the run failed or left final sessions missing (they are named)
EXIT_USAGE = 2  # the config or the command line is wrong; nothing was run
__all__ = [
    "EXIT_BUSY",
    "EXIT_COMPLETE",
    "EXIT_INCOMPLETE",
    "EXIT_LEASE_LOST",
    "EXIT_USAGE",
    "run_update",
    "update",
]


class _Tee(io.TextIOBase):
    """Writes through to ``stream`` and keeps the last ``keep`` characters written."""

    def __init__(self, stream: TextIO, keep: int = 20_000) -> None:
        self.stream, self.keep, self.tail = stream, keep, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.tail = (self.tail + text)[-self.keep :]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _snakemake(arguments: list[str]) -> tuple[int, str]:
    """Run Snakemake's command line in this process; its exit status and the end of what it
    printed to stderr (the cause, when it fails before running any job)."""
    from snakemake.cli import main as snakemake_main

    tee = _Tee(sys.stderr)
    sys.stderr = tee
    try:
        snakemake_main(arguments)
    except SystemExit as exit_:
        code = exit_.code
        return (code if isinstance(code, int) else (0 if code is None else 1)), tee.tail
    finally:
        sys.stderr = tee.stream
    return 0, tee.tail


def failure_cause(output: str) -> str:
    """The error Snakemake printed, from its last error line on, in one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    starts = [
        index
        for index, line in enumerate(lines)
        if line.startswith(("Error", "WorkflowError", "[marketpipe]"))
        or "Error:" in line
        or "Exception" in line
    ]
    chosen = lines[starts[-1] :] if starts else lines[-3:]
    noise = ("Complete log", "Shutting down", "Exiting because", "Using workflow specific")
    text = " | ".join(line for line in chosen if not line.startswith(noise))
    return (text or "no message")[:600]


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
    arguments = ["--snakefile", str(snakefile), "--nolock"]
    if Path(config_file).resolve() != (Path.cwd() / DEFAULT_CONFIG).resolve():
        # The Snakefile reads config/config.yaml itself; naming it again would make Snakemake
        # say it was "extended by additional config specified via the command line".
        arguments += ["--configfile", str(config_file)]
    # A schedule's log: MarketPipe's progress lines and summary, not every job's output paths
    # (errors are still printed; the details are in the JSON logs).
    arguments += ["--quiet", "rules", "reason", "host"]
    entries = snakemake_config_entries(overrides)
    return arguments + (["--config", *entries] if entries else [])


def drop_premature_partitions(settings: WorkflowSettings) -> list[tuple[str, dt.date]]:
    """Delete :func:`premature_partitions` (files first, then ledger rows), so this run fetches
    them again; call only while holding the lake's run lock."""
    premature = premature_partitions(settings)
    if not premature:
        return []
    with CheckpointStore(settings.state_dir) as store:
        for symbol, day in premature:
            invalidate_months(settings.lake, store, symbol, [day])
            settings.lake.delete(partition_key(symbol, day))
            settings.lake.delete(quarantine_key(symbol, day))
        for symbol, day in premature:
            store.forget(symbol, [day])
    print(
        f"[marketpipe] {len(premature)} partition(s) had been written before their session "
        f"was final ({describe_partitions(premature)}); they are fetched again",
        file=sys.stderr,
        flush=True,
    )
    return premature


def update(
    config_file: Path, overrides: Sequence[str], cores: int, workflow_dir: Path | None = None
) -> int:
    """``marketpipe update``: every way it can fail ends in one alert naming the cause.

    A run that reaches Snakemake's scheduler alerts at its end (see ``workflow.run``); one
    that fails before (a bad config, the lake unreachable, the lake held too long, Snakemake
    failing to parse or plan) is recorded and alerted here.
    """
    run_id = hand_over_run()  # a new run each call, also when called twice in one process
    try:
        snakefile = find_snakefile(workflow_dir)
        settings = load_command_settings(config_file, overrides)
    except (WorkflowNotFound, CommandError, ConfigError) as exc:
        alert_unstarted_run(run_id, str(exc), policy=policy_from_raw(_raw_config(config_file)))
        print(f"marketpipe update: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    try:
        check_lake_reachable(settings)
    except LakeUnreachable as exc:
        alert_unstarted_run(run_id, str(exc), settings)
        print(f"marketpipe update: {exc}; nothing was run", file=sys.stderr, flush=True)
        return EXIT_INCOMPLETE
    return run_update(settings, config_file, overrides, cores, snakefile)


def _raw_config(config_file: Path) -> dict[str, Any] | None:
    try:
        raw = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return raw if isinstance(raw, dict) else None


class LakeUnreachable(RuntimeError):
    """The lake (or its state directory) cannot be reached; the message names it and why."""


def check_lake_reachable(settings: WorkflowSettings) -> None:
    """One cheap request (an S3 LIST for at most one key) before any work: a lake that cannot
    be reached fails the run with its cause, not a traceback halfway through planning."""
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LakeUnreachable(
            f"cannot create the state directory {settings.state_dir}: {exc.strerror}"
        ) from None
    if settings.lake.is_local:
        return
    try:
        settings.lake.any(LAKE_DIR)
    except Exception as exc:  # botocore's errors, without importing botocore here
        raise LakeUnreachable(
            f"cannot reach the lake {settings.lake.uri}: {type(exc).__name__}: {exc}"
        ) from None


def run_update(
    settings: WorkflowSettings,
    config_file: Path,
    overrides: Sequence[str],
    cores: int,
    snakefile: Path,
) -> int:
    """Run the workflow once under the run lock (as the run :func:`update` handed over);
    return one of the ``EXIT_*`` codes."""
    run_id = current_run_id()
    try:
        with settings.run_lock("marketpipe update"):
            drop_premature_partitions(settings)
            repaired = damaged_partitions(settings, repair=True)
            arguments = [
                *_workflow_arguments(config_file, overrides, snakefile),
                "--cores",
                str(cores),
            ]
            status, output = _snakemake(arguments)
    except RunInProgress as busy:
        print(f"marketpipe update: {busy}; this run did nothing", file=sys.stderr, flush=True)
        limit = settings.config.alerts.busy_minutes * 60
        if busy.held_seconds is not None and busy.held_seconds >= limit:
            held = f"{busy.held_seconds / 60:.0f} min"
            cause = f"{busy} (held for {held}, longer than alerts.busy_minutes)"
            alert_unstarted_run(run_id, cause, settings)
        return EXIT_BUSY
    if status != 0 and not run_summarised(settings, run_id):
        cause = f"the workflow failed before running any job: {failure_cause(output)}"
        alert_unstarted_run(run_id, cause, settings)
        print(f"marketpipe update: {cause}", file=sys.stderr, flush=True)
        return EXIT_INCOMPLETE
    if status == EXIT_LEASE_LOST:
        print(
            "marketpipe update: this run lost the lake's lease to another controller and "
            "stopped writing (see above); the controller holding it now completes the lake",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_LEASE_LOST
    if status == EXIT_INTERRUPTED:  # Ctrl-C: the run said so; a shell expects 130
        return EXIT_INTERRUPTED
    missing = missing_partitions(settings)
    if missing:
        print(
            f"marketpipe update: INCOMPLETE: {len(missing)} final partition(s) missing: "
            f"{describe_partitions(missing)}; {_what_fetches_them(settings)}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INCOMPLETE
    if status != 0:
        print(f"marketpipe update: the workflow failed (exit {status})", file=sys.stderr)
        return EXIT_INCOMPLETE
    if not settings.planned_partitions:
        for note in run_scope_notes(settings):
            print(f"marketpipe update: {note}", flush=True)
        return EXIT_COMPLETE
    print(
        f"marketpipe update: complete: all {settings.planned_partitions} final partition(s) "
        f"of {settings.config.start}..{settings.end} are in the lake"
        + (f"; repaired {len(repaired)}: {describe_damage(repaired)}" if repaired else ""),
        flush=True,
    )
    return EXIT_COMPLETE


def _what_fetches_them(settings: WorkflowSettings) -> str:
    """Who gets the missing partitions: the next run, or a person first when the run's
    failures were permanent (refused keys, an unknown symbol)."""
    summary = latest_run_summary(settings.state_dir) or {}
    failures = (summary.get("jobs") or {}).get("failures") or []
    if any(failure.get("permanent") for failure in failures):
        return "a person must fix the permanent failure named above before a run can fetch them"
    return "the next run fetches them"
