"""The ``security_master`` job: what the vendor says about the securities the config names.

Once per New York date that a run happens (and again when the config's symbols or range
end change), the job asks again which security each symbol names on the range's last day,
under which tickers, and whether it was listed or delisted, and publishes the lake's
``securities/securities.parquet`` if a fact changed. Polygon is asked through its reference
endpoints; for Alpaca the job reads the corporate actions the lake keeps (the
``corporate_actions`` job runs first).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path

from marketpipe.connectors import ConnectorError, PolygonClient
from marketpipe.ingest.securities import (
    SecurityOf,
    alpaca_security,
    learned_renames,
    polygon_security,
    refresh_securities,
)
from marketpipe.lake.actions import read_actions
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.securities import TickerInterval, read_securities
from marketpipe.lake.universe import membership_digest, publish_membership
from marketpipe.markettime.calendar import new_york_date
from marketpipe.observability.logs import job_context, json_log_file, log_event
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.workflow.jobs import (
    check_job_record,
    fail_job,
    job_error_is_permanent,
    write_marker,
)
from marketpipe.workflow.planning import securities_marker, symbols_label
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.vendors import VendorClients, open_clients

logger = logging.getLogger(__name__)
JOB_NAME = "security_master"


def refresh_security_master(
    settings: WorkflowSettings, marker: Path | str, log_path: Path | str
) -> list[TickerInterval]:
    """Bring the lake's security master of the configured symbols up to date; writes
    ``marker`` on success, raises :class:`FetchFailed` naming the cause otherwise."""
    symbols = tuple(settings.config.symbols)
    today = new_york_date(settings.now)
    as_of = min(settings.end, today)
    recorder = MetricsRecorder()
    started = time.time()
    error: str | None = None
    permanent = False
    rows: list[TickerInterval] = []
    changed = False
    notes: list[str] = []
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month="securities"):
        log_event(logger, "securities.start", f"securities of {symbols_label(symbols)}")
        try:
            stored = read_securities(settings.lake)
            with open_clients(settings, recorder) as clients:
                rows, changed = refresh_securities(
                    settings.lake, symbols, _asker(settings, clients, as_of, today)
                )
            notes = _announce_renames(learned_renames(stored, rows, symbols))
        except (ConnectorError, ValueError, OSError) as exc:
            error = f"securities of {symbols_label(symbols)} failed: {exc}"
            permanent = job_error_is_permanent(exc)
        log_event(
            logger,
            "securities.end",
            f"securities: {len(rows)} ticker interval(s), "
            + ("file changed" if changed else "file unchanged"),
            status="failed" if error else "ok",
        )
        record = check_job_record(JOB_NAME, ",".join(symbols), error, permanent, started, recorder)
        with CheckpointStore(settings.state_dir) as store:
            store.record_job(record)
        if error:
            fail_job(error, permanent)
    summary = {
        "checked_on": today.isoformat(),
        "as_of": as_of.isoformat(),
        "symbols": list(symbols),
        "changed": changed,
        "notes": notes,
    }
    write_marker(marker, summary)
    return rows


def _announce_renames(renames: list[TickerInterval]) -> list[str]:
    """One line per rename the master learned: logged, and said by the run's verdict once."""
    notes = []
    for rename in renames:
        since = f" (since {rename.valid_from})" if rename.valid_from else ""
        note = (
            f"{rename.symbol} now trades as {rename.ticker}{since}; its series goes on under "
            "the new ticker"
        )
        log_event(logger, "securities.renamed", note, symbol=rename.symbol)
        notes.append(note)
    return notes


def securities_notes(settings: WorkflowSettings, jobs: list[str]) -> list[str]:
    """What this run's security-master job had to say (a rename it learned), if it ran
    (``jobs``: the names of the run's jobs)."""
    if JOB_NAME not in jobs:
        return []
    try:
        written = json.loads(securities_marker(settings).read_text())
    except (OSError, ValueError):
        return []
    return [str(note) for note in written.get("notes", [])]


def publish_universe(settings: WorkflowSettings, marker: Path | str, log_path: Path | str) -> bool:
    """Keep the config's universe membership in the lake (``universe/members.parquet``,
    read by ``marketpipe.members`` and the readers); writes ``marker``; returns whether the
    lake's file changed."""
    membership = settings.config.membership
    with json_log_file(log_path), job_context(symbol="universe", month="universe"):
        changed = publish_membership(settings.lake, membership)
        log_event(
            logger,
            "universe.published",
            f"universe: {len(membership)} member(s), "
            + ("file changed" if changed else "file unchanged"),
        )
    write_marker(marker, {"members": len(membership), "changed": changed})
    return changed


def universe_marker(settings: WorkflowSettings) -> Path:
    """The file saying the lake holds this membership: the ``universe`` job runs again only
    when the universe file (or the range) changes."""
    digest = membership_digest(settings.config.membership)
    return settings.markers_dir / "universe" / f"members-{digest}.json"


def _asker(
    settings: WorkflowSettings, clients: VendorClients, as_of: dt.date, today: dt.date
) -> SecurityOf:
    """How the vendor is asked about one symbol: Polygon's reference data, or Alpaca's
    corporate actions (the lake keeps them) and its assets."""
    polygon = clients.bars
    if isinstance(polygon, PolygonClient):
        return lambda symbol, pinned: polygon_security(polygon, symbol, as_of, today, pinned)
    assets = clients.assets
    if assets is not None:
        assets.prefetch(settings.config.symbols)
    return lambda symbol, pinned: alpaca_security(
        read_actions(settings.lake, symbol),
        symbol,
        today,
        settings.config.vendor,
        assets.asset if assets is not None else None,
        pinned,
    )
