"""The workflow's consolidation jobs: one per month whose month files are due.

A symbol-month is due when every one of its sessions is final and inside the configured
range, and either this run fetches some of its days or its month file is missing or stale
(its sources' digest differs from the ledger's day hashes, or the ledger does not know all
its days yet). Decided from the fetch plan's listing, the ledger and one listing of
``ohlcv_monthly/``, so a complete, consolidated lake plans nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from marketpipe.foundation.files import write_atomically
from marketpipe.ingest.ledger_sync import sync_ledger_with_files
from marketpipe.lake.consolidated import ConsolidationReport, consolidate
from marketpipe.lake.fencing import check_fence
from marketpipe.lake.ledger import CheckpointStore, state_path
from marketpipe.lake.month_sources import (
    Month,
    month_files,
    month_of,
    month_sessions,
    sources_digest,
)
from marketpipe.observability.logs import job_context, json_log_file, log_event
from marketpipe.workflow.settings import WorkflowSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsolidationJob:
    """The month files of ``symbols`` in one month, built after that month's fetch jobs."""

    month: Month
    symbols: tuple[str, ...]

    @property
    def label(self) -> str:
        """``YYYY_MM``, used in rule names."""
        return f"{self.month[0]:04d}_{self.month[1]:02d}"

    @staticmethod
    def month_of_label(label: str) -> Month:
        """The (year, month) a :attr:`label` names."""
        year, number = label.split("_")
        return int(year), int(number)

    @property
    def name(self) -> str:
        """The rule's name."""
        return f"consolidate_{self.label}"

    def marker(self, markers_dir: Path | str, run_id: str) -> str:
        """The job's output: a file it writes when the month is done (a marker per run, as
        the month files it brings up to date may exist already)."""
        return str(Path(markers_dir) / "consolidate" / run_id / f"{self.label}.done")


def pending_consolidations(
    settings: WorkflowSettings, fetched: Iterable[tuple[str, Month]]
) -> list[ConsolidationJob]:
    """The months whose month files this run builds, rebuilds or removes (see the module);
    ``fetched``: the (symbol, month) pairs this run's fetch jobs write into."""
    if not settings.config.consolidate or not settings.final_days:
        return []
    final = set(settings.final_days)
    months = [
        month
        for month, _ in itertools.groupby(settings.final_days, key=month_of)
        if set(month_sessions(month)) <= final
    ]
    if not months:
        return []
    fetched = set(fetched)
    hashes: dict[tuple[str, Month], dict[dt.date, str]] = {}
    recorded = {}
    if state_path(settings.state_dir).exists():
        with CheckpointStore(settings.state_dir) as store:
            for entry in store.all_entries():
                key = (entry.symbol, month_of(entry.day))
                hashes.setdefault(key, {})[entry.day] = entry.sha256
            recorded = store.month_entries()
    present = month_files(settings.lake)
    jobs = []
    for month in months:
        sessions = month_sessions(month)
        due = []
        for symbol in settings.config.symbols:
            key = (symbol, month)
            if len(settings.expected_days(symbol).days(sessions)) < len(sessions):
                continue  # part of the month only (a listing, delisting, membership): days

            # Not fetched: every day is in the lake (the fetch plan listed it). The month is
            # current only if the ledger knows each day (jobs elsewhere may not have told it
            # yet: the job adopts them) and recorded this file from those days' hashes.
            days = hashes.get(key, {})
            entry = recorded.get(key)
            current = (
                key not in fetched
                and key in present
                and entry is not None
                and all(day in days for day in sessions)
                and entry.sources_sha256 == sources_digest({day: days[day] for day in sessions})
            )
            if not current:
                due.append(symbol)
        if due:
            jobs.append(ConsolidationJob(month, tuple(sorted(due))))
    return jobs


def consolidate_month(
    settings: WorkflowSettings,
    symbols: Sequence[str],
    month: str,
    log_path: Path | str,
    done_marker: Path | str,
) -> ConsolidationReport:
    """Bring the month files of ``symbols`` in ``month`` (``YYYY_MM``) up to date; log JSON
    to ``log_path``; write ``done_marker`` when done. A month whose day files are not all
    there (a fetch that failed) is left to the day files, with a warning."""
    year, number = ConsolidationJob.month_of_label(month)
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month=month):
        check_fence(f"consolidating {month}")
        with CheckpointStore(settings.state_dir) as store:
            for symbol in symbols:
                # Jobs that ran elsewhere (a cluster) recorded their days in their own
                # ledgers: learn this month's days from the lake first.
                sync_ledger_with_files(
                    store, settings.lake, symbol, list(month_sessions((year, number)))
                )
            report = consolidate(settings.lake, store, symbols, [(year, number)])
        log_event(
            logger,
            "consolidate.done",
            f"{month}: {len(report.built)} month file(s) built, {report.current} current, "
            f"{len(report.removed)} removed, {len(report.refused)} refused",
            built=len(report.built),
            removed=len(report.removed),
            refused=len(report.refused),
        )
    write_atomically(Path(done_marker), f"{month}\n".encode())
    return report
