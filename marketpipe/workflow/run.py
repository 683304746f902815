"""A run's life: process setup, the lake's run lock, start, and the end with summary and alert.

Snakemake's ``onstart``/``onsuccess``/``onerror`` hooks call these; each is usable without it.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import pyarrow as pa

from marketpipe.ingest.ledger_sync import sync_ledger_with_files
from marketpipe.lake.fencing import LeaseLost, check_fence
from marketpipe.lake.integrity import describe_damage
from marketpipe.lake.job_fence import fence_this_job
from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.news import adopt_unrecorded_news
from marketpipe.lake.objects import S3Store
from marketpipe.lake.reindex import reindex
from marketpipe.lake.run_lock import RunInProgress, RunLock
from marketpipe.observability.logs import (
    RUN_JOBS_VARIABLE,
    RUN_STARTED_VARIABLE,
    current_run_id,
    json_log_file,
    log_event,
)
from marketpipe.observability.summary import (
    build_run_summary,
    format_run_summary,
    write_run_summary,
)
from marketpipe.workflow.alerting import alert_about_run, run_log_path
from marketpipe.workflow.console import CONSOLE, RunProgress
from marketpipe.workflow.jobs import collect_job_records, present_partition_count
from marketpipe.workflow.run_plan import delete_run_plan, run_plan_location
from marketpipe.workflow.securities_jobs import securities_notes
from marketpipe.workflow.settings import STATE_DIR_VARIABLE, WorkflowSettings
from marketpipe.workflow.status import damaged_partitions

logger = logging.getLogger(__name__)


def configure_workflow_process() -> None:
    """Process-wide memory settings for the Snakemake process whose threads run the jobs.

    Jobs and their read-ahead threads come and go, and per-thread allocator caches kept
    what they freed: the workflow's peak RSS grew with the number of jobs and varied by
    ~60 MB between identical runs. Arrow uses the system allocator, and glibc shares two
    malloc arenas among all threads (measured: same speed, steady and lower peak).
    ``ARROW_DEFAULT_MEMORY_POOL`` and ``MALLOC_ARENA_MAX`` still win when set.
    """
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    if not os.environ.get("MALLOC_ARENA_MAX"):
        _limit_malloc_arenas(2)


def _limit_malloc_arenas(count: int) -> None:
    """glibc's ``mallopt(M_ARENA_MAX, count)``; a no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8  # from glibc's malloc.h
    mallopt(m_arena_max, count)


def use_private_state(settings: WorkflowSettings) -> None:
    """In a job process of an S3 lake, keep state (ledger, logs) in a directory of its own.

    Such a job may run on a machine that shares no filesystem with the controller (and a
    shared one may not hold SQLite safely): it publishes to the bucket, and the controller
    rebuilds its ledger from the bucket at the end of the run. ``$MARKETPIPE_STATE_DIR``,
    when set (node-local scratch), is used as it is.
    """
    if settings.lake.is_local or os.environ.get(STATE_DIR_VARIABLE):
        return
    private = tempfile.mkdtemp(prefix="marketpipe-job-")
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    os.environ[STATE_DIR_VARIABLE] = private


def fence_job_writes(settings: WorkflowSettings) -> None:
    """In a job process of an S3 lake, stop writing once the run's controller no longer
    holds the lease (:mod:`marketpipe.lake.job_fence`)."""
    if isinstance(settings.lake, S3Store):
        fence_this_job(settings.lake, settings.config.s3.lease_seconds)


def recover_interrupted_jobs(settings: WorkflowSettings) -> int:
    """Reconcile the ledger of jobs a crash interrupted; return how many there were.

    A kill between writing a partition and recording it leaves a file the ledger does not
    know. Its job's month may look complete on disk, so no job would reconcile it again.
    """
    if not state_path(settings.state_dir).exists():
        return 0
    with CheckpointStore(settings.state_dir) as store:
        interrupted = store.open_jobs()
        for job, (symbols, days) in interrupted.items():
            for symbol in symbols:
                sync_ledger_with_files(store, settings.lake, symbol, days)
            store.close_job(job)
            log_event(logger, "job.recovered", f"reconciled the ledger of interrupted job {job}")
        _adopt_news(settings, store)
    return len(interrupted)


def _adopt_news(settings: WorkflowSettings, store: CheckpointStore) -> None:
    """Record news files written by jobs whose ledger rows are missing (a crash between the
    write and the row, or a job on another machine)."""
    adopted = adopt_unrecorded_news(settings.lake, store, current_run_id())
    if adopted:
        log_event(logger, "news.adopted", f"recorded {len(adopted)} news day file(s) in the ledger")


def is_dry_run(argv: Sequence[str]) -> bool:
    """Whether Snakemake was started with ``-n`` / ``--dry-run`` (also in a flag cluster such
    as ``-np``): the Snakefile cannot ask Snakemake before it has planned."""
    flags = ("--dry-run", "--dryrun", "--just-print")
    return any(
        arg in flags or (re.fullmatch(r"-[A-Za-z]+", arg) is not None and "n" in arg)
        for arg in argv
    )


def repair_damaged_before_planning(settings: WorkflowSettings, argv: Sequence[str]) -> None:
    """Move partitions changed on disk aside before the run plans (they are then missing and
    fetched again in this run); a dry run only names them. Only under the lake's run lock: a
    lake another run is writing is left to that run (this one will stop at its start)."""
    if not settings.lake.is_local:
        return
    dry_run = is_dry_run(argv)
    try:
        with settings.run_lock("snakemake (checking for damaged files)"):
            damaged = damaged_partitions(settings, repair=not dry_run)
    except RunInProgress:
        return
    if damaged and dry_run:
        print(
            f"[marketpipe] damaged: {describe_damage(damaged)}; a run moves them aside and "
            "fetches them again",
            file=sys.stderr,
            flush=True,
        )


_INTERRUPTED = threading.Event()
EXIT_BUSY = 75  # another run holds the lake (EX_TEMPFAIL: try again later); nothing was run
EXIT_LEASE_LOST = 76  # the run lost its S3 lake's lease mid-run and stopped writing
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

_PROGRESS: list[RunProgress] = []  # the progress line of this process's run

_RUN_LOCKS: list[RunLock] = []  # held by this process's run until it ends


def hold_run_lock(settings: WorkflowSettings) -> None:
    """Take the lake's run lock for this run (Snakemake ``onstart``); :func:`finish_run`
    releases it, and so does this process's exit (a Ctrl-C'd or failed run included).

    The lake's run lock is the one lock of MarketPipe's runs (the profiles run Snakemake with
    ``nolock``: its lock is per working directory, not per lake). When another live process
    writes the lake, this run stops at once with exit status 75 and a message naming it; a
    lock that ``marketpipe update`` took in this same process already covers the run.
    """
    lock = settings.run_lock("snakemake")
    try:
        lock.acquire()
    except RunInProgress as busy:
        print(
            f"[marketpipe] {busy}. This run did nothing: start it again once that run has "
            "ended (a run that was killed frees the lake by itself; never delete its lock)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_BUSY) from None
    if not _RUN_LOCKS:
        atexit.register(release_run_lock)
    _RUN_LOCKS.append(lock)


def release_run_lock() -> None:
    """Let go of the run lock :func:`hold_run_lock` took (an S3 lake's lease is deleted)."""
    while _RUN_LOCKS:
        _RUN_LOCKS.pop().release()


def start_run(settings: WorkflowSettings, planned_jobs: int = 0) -> None:
    """Log the run's start and recover from a crashed run (Snakemake ``onstart``); note when
    it started, how many jobs it plans, and a Ctrl-C (its summary says "interrupted")."""
    os.environ[RUN_STARTED_VARIABLE] = str(time.time())
    os.environ[RUN_JOBS_VARIABLE] = str(planned_jobs)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _note_interrupt)
    with json_log_file(run_log_path(settings, current_run_id()), this_thread_only=False, mode="a"):
        recover_interrupted_jobs(settings)
        with CheckpointStore(settings.state_dir) as store:
            present = present_partition_count(store, settings)
        progress = RunProgress(settings.state_dir, settings.planned_partitions, planned_jobs)
        progress.start(present)
        _PROGRESS.append(progress)
        log_event(
            logger,
            "run.start",
            f"run {current_run_id()} started",
            symbols=",".join(settings.config.symbols),
            start=settings.config.start.isoformat(),
            end=settings.end.isoformat(),
            vendor=settings.config.vendor,
            planned=settings.planned_partitions,
        )


def stop_progress() -> None:
    """Stop the progress line :func:`start_run` started."""
    while _PROGRESS:
        _PROGRESS.pop().stop()


def _note_interrupt(signum: int, frame: FrameType | None) -> None:
    _INTERRUPTED.set()
    signal.default_int_handler(signum, frame)


def finish_run(settings: WorkflowSettings, status: str) -> dict[str, Any]:
    """Roll up, save and print the run summary (Snakemake ``onsuccess`` / ``onerror``).

    An S3 lake's jobs may have run on machines with ledgers of their own: the controller's
    ledger learns their partitions from the lake first (:func:`reindex`). A run that lost
    its S3 lake's lease touches the lake no more: it says so and exits with
    :data:`EXIT_LEASE_LOST`.
    """
    stop_progress()
    lost = _lost_lease()
    if lost is not None:
        status = "failed"
    elif _INTERRUPTED.is_set():
        status = "interrupted"
    with CheckpointStore(settings.state_dir) as store:
        if not settings.lake.is_local and lost is None:
            reindex(store, settings.lake)
            _adopt_news(settings, store)
            collect_job_records(store, settings)
        present = present_partition_count(store, settings)
        records = store.job_records(current_run_id())
        summary = build_run_summary(
            records,
            current_run_id(),
            status,
            settings.planned_partitions,
            present,
            int(os.environ.get(RUN_JOBS_VARIABLE, "0")),
            securities_notes(settings, [record.job for record in records]),
        )
    path = write_run_summary(settings.state_dir, summary)
    if lost is None:
        delete_run_plan(run_plan_location(settings, current_run_id()))
    with json_log_file(run_log_path(settings, current_run_id()), this_thread_only=False, mode="a"):
        log_event(
            logger,
            "run.end",
            f"run {summary['run_id']} {status}",
            status=status,
            summary_path=str(path),
            requests=summary["requests"],
            retries=summary["retries"],
            errors=summary["errors"],
            jobs_failed=summary["jobs"]["failed"],
        )
    print(format_run_summary(summary), flush=True)
    print(f"  summary: {path}", flush=True)
    alert_about_run(settings, summary)
    release_run_lock()
    cancel_scheduler_timers()
    if lost is not None:
        print(
            f"[marketpipe] {lost}. It wrote nothing after that; whatever is missing, the run "
            "that holds the lake now (or the next one) fetches",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_LEASE_LOST)
    if status == "interrupted":
        CONSOLE.say(
            "interrupted: every partition at a final path is complete; run the same command "
            "again to fetch the rest"
        )
        raise SystemExit(EXIT_INTERRUPTED)
    return summary


def cancel_scheduler_timers() -> None:
    """Cancel Snakemake's pending re-evaluation timers once the run is over: each is a
    non-daemon ``threading.Timer`` of up to a second that would hold the process open
    (a second of every run's wall time, measured on a 1M-row backfill)."""
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and getattr(function, "__module__", "").startswith(
            "snakemake."
        ):
            thread.cancel()


def _lost_lease() -> str | None:
    """Why this process's lease of the lake was lost, or None while it holds it."""
    try:
        check_fence("the end of the run")
    except LeaseLost as lost:
        return str(lost)
    return None
