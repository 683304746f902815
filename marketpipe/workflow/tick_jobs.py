"""The workflow's trades and quotes jobs: one symbol's missing days of one month, each day
streamed from the vendor into its file and recorded in the ledger."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from marketpipe.connectors import ConnectorError
from marketpipe.connectors.errors import is_permanent
from marketpipe.connectors.models import ticker_on
from marketpipe.ingest.ticks import fetch_tick_day
from marketpipe.lake.fencing import check_fence
from marketpipe.lake.ledger import CheckpointStore, TickEntry
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.ticks import TickKind, adopt_unrecorded_ticks
from marketpipe.markettime.timeutil import sorted_days
from marketpipe.observability.logs import current_run_id, job_context, json_log_file, log_event
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.workflow.jobs import (
    check_job_record,
    fail_job,
    record_job,
    reported_error_first,
    write_marker,
)
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.streams import stream_settings
from marketpipe.workflow.vendors import open_clients

logger = logging.getLogger(__name__)


def fetch_ticks(
    settings: WorkflowSettings,
    kind: TickKind,
    symbol: str,
    days: Sequence[dt.date | str],
    log_path: Path | str,
    done_marker: Path | str | None = None,
) -> list[TickEntry]:
    """Store ``symbol``'s ``kind`` of ``days`` (final sessions not stored or not recorded):
    a file already there whole is recorded, the others fetched page by page; the job's
    outcome goes to the ledger, and ``done_marker`` (what was stored) is written when done."""
    wanted = sorted_days(days)
    label = f"{kind} of {symbol} {wanted[0]}..{wanted[-1]}"
    recorder = MetricsRecorder()
    started = time.time()
    stored: list[TickEntry] = []
    run_id = current_run_id()
    with json_log_file(log_path), job_context(symbol=symbol, month=wanted[0].strftime("%Y-%m")):
        log_event(logger, "ticks.start", f"fetching {label}", planned=len(wanted))
        with CheckpointStore(settings.state_dir) as store:
            error, permanent = None, False
            try:
                check_fence(f"fetching {label}")
                adopted = adopt_unrecorded_ticks(
                    settings.lake, store, run_id, (kind,), [symbol], set(wanted)
                )
                stored.extend(adopted)
                done = {entry.day for entry in stored}
                with open_clients(settings, recorder) as clients:
                    client = clients.ticks(kind)
                    # Massive serves tickers as traded: a renamed security's days are asked
                    # for under the ticker it used then (from the security master).
                    traded_as = ()
                    if settings.fetches_by_security:
                        streams = stream_settings(settings, clients.assets, {symbol})
                        traded_as = streams.tickers_of(symbol)
                    for day in wanted:
                        if day in done:
                            continue
                        written = fetch_tick_day(
                            client,
                            settings.lake,
                            symbol,
                            day,
                            feed=settings.feed,
                            asof=settings.symbols_asof,
                            vendor=settings.config.vendor,
                            ticker=ticker_on(traded_as, symbol, day),
                        )
                        entry = TickEntry(kind, symbol, day, written.rows, written.sha256, run_id)
                        store.record_ticks(entry)
                        _remember_stamp(settings, store, written.key)
                        stored.append(entry)
                        log_event(
                            logger, "ticks.day", f"{kind} of {symbol} {day}: {entry.rows:,} rows"
                        )
            except (ConnectorError, ValueError) as exc:
                error = f"fetching {label} failed: {exc}"
                permanent = is_permanent(exc)
            finally:
                rows = sum(entry.rows for entry in stored)
                record = check_job_record(
                    label, kind, error, permanent, started, recorder, rows=rows
                )
                with reported_error_first(label):
                    record_job(store, settings, record)
        status = "failed" if error else "ok"
        log_event(logger, "ticks.end", f"{label}: {len(stored)} day file(s) stored", status=status)
        if error:
            fail_job(error, permanent)
    if done_marker is not None:
        summary = {
            entry.day.isoformat(): entry.rows for entry in sorted(stored, key=lambda e: e.day)
        }
        write_marker(done_marker, {"job": label, "rows_by_day": summary})
    return stored


def _remember_stamp(settings: WorkflowSettings, store: CheckpointStore, key: str) -> None:
    """Remember a local file's size and mtime as written, so the damage check at the next
    run's start needs a ``stat``, not a hash of millions of rows (see ``lake.integrity``)."""
    if isinstance(settings.lake, LocalStore):
        status = settings.lake.path(key).stat()
        store.record_file_stamps([(key, status.st_size, status.st_mtime_ns)])
