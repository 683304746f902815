"""``marketpipe refresh``: fetch published sessions again, replace only what the vendor changed.

Vendors correct bars after the fact (late cancels, next-morning recalculation), and a lake
of immutable partitions never sees that on its own. A refresh fetches the sessions into a
staging area under ``_state/refresh/``, built exactly as the lake is, so unchanged content
gives identical bytes. A partition whose bytes differ is replaced atomically (its quarantine
file with it) and the ledger records both versions, when and why; unchanged ones are not
touched. An interrupted refresh is finished by running it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from marketpipe.connectors.flat_files import FlatFilesClient
from marketpipe.ingest.bars import SymbolsFailed
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.identity import claim_identity
from marketpipe.lake.ledger import CheckpointStore, LedgerEntry
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import (
    partition_key,
    partition_path,
    present_partitions,
    quarantine_key,
    quarantine_path,
)
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.observability.logs import current_run_id, json_log_file
from marketpipe.workflow.settings import WorkflowSettings, flat_files_config
from marketpipe.workflow.streams import stream_settings
from marketpipe.workflow.vendors import open_clients

STAGING_DIR = Path("_state") / "refresh"


@dataclass(frozen=True)
class Replaced:
    """A partition the refresh replaced."""

    symbol: str
    day: dt.date
    old_rows: int
    new_rows: int


@dataclass
class RefreshResult:
    """What one refresh did."""

    replaced: list[Replaced] = field(default_factory=list)
    unchanged: int = 0
    not_in_lake: list[tuple[str, dt.date]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def refresh_partitions(
    settings: WorkflowSettings,
    symbols: list[str],
    first: dt.date,
    last: dt.date,
    reason: str = "refresh requested",
) -> RefreshResult:
    """Re-fetch the published, final partitions of ``symbols`` from ``first`` to ``last``.

    Holds the lake's run lock throughout (raises ``RunInProgress`` if another run has it).
    Sessions not in the lake yet are left to the workflow and reported.
    """
    state_dir = settings.state_dir
    result = RefreshResult()
    final = [
        session.date
        for session in trading_sessions(first, last)
        if settings.finality.is_final(session, settings.now)
    ]
    published: dict[str, list[dt.date]] = {}
    listed = present_partitions(settings.lake, symbols)
    for symbol in sorted(symbols):
        for day in final:
            if (symbol, day) in listed:
                published.setdefault(symbol, []).append(day)
            else:
                result.not_in_lake.append((symbol, day))
    run_id = current_run_id()
    with settings.run_lock("marketpipe refresh"):
        staging = state_dir / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted refresh
        log = state_dir / "_logs" / "refresh" / f"{run_id}.jsonl"
        with json_log_file(log, this_thread_only=False, mode="a"):
            if settings.reads_flat_files:
                published = _with_replaced_files(settings, published, result)
            _fetch(settings, staging, published, result)
            with CheckpointStore(state_dir) as store, CheckpointStore(staging) as staged:
                store.claim_settings(settings.lake_settings())
                claim_identity(settings.lake, settings.identity)
                for symbol, days in published.items():
                    _adopt_changes(
                        store, staged, settings.lake, staging, symbol, days, reason, run_id, result
                    )
                _adopt_sources(store, staged, first, last)
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _fetch(
    settings: WorkflowSettings,
    staging: Path,
    published: dict[str, list[dt.date]],
    result: RefreshResult,
) -> None:
    """Build the staged copies: symbols with the same published days share a stream."""
    groups: dict[tuple[dt.date, ...], list[str]] = {}
    for symbol, days in published.items():
        groups.setdefault(tuple(days), []).append(symbol)
    with open_clients(settings) as clients, CheckpointStore(staging) as staged:
        for days, members in groups.items():
            try:
                clients.ingest_bars(
                    staged,
                    staging,
                    members,
                    list(days),
                    stream_settings(settings),
                    now=settings.now,
                )
            except SymbolsFailed as failed:
                result.failed.update({s: str(error) for s, error in failed.errors.items()})


def _with_replaced_files(
    settings: WorkflowSettings,
    published: dict[str, list[dt.date]],
    result: RefreshResult,
) -> dict[str, list[dt.date]]:
    """Of ``published``, the partitions whose flat file changed since they were split from
    it (a new ETag), or that came from the REST API or from no file the ledger knows; the
    others are unchanged without a read (one HEAD request per day)."""
    days = sorted({day for symbol_days in published.values() for day in symbol_days})
    if not days:
        return published
    with CheckpointStore(settings.state_dir) as store:
        recorded = store.partition_sources(days[0], days[-1])
    with FlatFilesClient(flat_files_config(settings.config)) as files:
        current = {day: files.etag(day) for day in days}
    changed: dict[str, list[dt.date]] = {}
    for symbol, symbol_days in published.items():
        kept = [
            day
            for day in symbol_days
            if current[day] is None or recorded.get((symbol, day), ("", ""))[1] != current[day]
        ]
        result.unchanged += len(symbol_days) - len(kept)
        if kept:
            changed[symbol] = kept
    return changed


def _adopt_sources(
    store: CheckpointStore, staged: CheckpointStore, first: dt.date, last: dt.date
) -> None:
    """Record the files (and versions) the refreshed partitions were split from."""
    by_file: dict[tuple[str, str], list[tuple[str, dt.date]]] = {}
    for partition, source in staged.partition_sources(first, last).items():
        by_file.setdefault(source, []).append(partition)
    for (source, version), partitions in sorted(by_file.items()):
        store.record_sources(source, version, partitions)


def _adopt_changes(
    store: CheckpointStore,
    staged: CheckpointStore,
    lake: LakeStore,
    staging: Path,
    symbol: str,
    days: list[dt.date],
    reason: str,
    run_id: str,
    result: RefreshResult,
) -> None:
    """Replace the partitions whose staged bytes differ; leave the others untouched."""
    staged_ledger, ledger = staged.ledger(symbol, days), store.ledger(symbol, days)
    for day in days:
        new = staged_ledger.get(day)
        if new is None:  # its symbol failed; reported in result.failed
            continue
        target = partition_key(symbol, day)
        current_bytes = lake.get(target)
        current = hashlib.sha256(current_bytes).hexdigest()
        recorded = ledger.get(day)
        if new.sha256 == current:
            result.unchanged += 1
            if recorded is None or recorded.sha256 != current:
                # The file was replaced but the ledger not yet (an interrupted refresh).
                store.replace(recorded, new, f"{reason} (ledger caught up)", run_id)
            continue
        try:
            old_rows = pq.ParquetFile(pa.BufferReader(current_bytes)).metadata.num_rows
        except (OSError, pa.ArrowException):  # damaged: replaced like any changed file
            old_rows = recorded.rows if recorded is not None else 0
        old = LedgerEntry(symbol, day, old_rows, current, old_rows == 0, 0, 0)
        staged_rejects = quarantine_path(staging, symbol, day)
        rejects = quarantine_key(symbol, day)
        invalidate_months(lake, store, symbol, [day])
        if staged_rejects.exists():
            lake.put(rejects, staged_rejects.read_bytes())
        else:
            lake.delete(rejects)
        lake.put(target, partition_path(staging, symbol, day).read_bytes())
        store.replace(old, new, reason, run_id)
        result.replaced.append(Replaced(symbol, day, old_rows, new.rows))
