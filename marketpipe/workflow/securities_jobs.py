"""The ``security_master`` job: what the vendor says about the securities the config names.

Once per New York date that a run happens (and again when the config's symbols or range
end change), the job asks again which security each symbol names on the range's last day,
under which tickers, and whether it was listed or delisted, and publishes the lake's
``securities/securities.parquet`` if a fact changed. Polygon is asked through its reference
endpoints; for Alpaca the job reads the corporate actions the lake keeps (the
``corporate_actions`` job runs first).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from marketpipe.connectors import ConnectorError, PolygonClient
from marketpipe.foundation.files import write_atomically
from marketpipe.ingest.securities import alpaca_security, polygon_security, refresh_securities
from marketpipe.lake.actions import read_actions
from marketpipe.lake.ledger import CheckpointStore, JobRecord
from marketpipe.lake.securities import TickerInterval
from marketpipe.markettime.calendar import new_york_date
from marketpipe.observability.logs import current_run_id, job_context, json_log_file, log_event
from marketpipe.observability.metrics import MetricsRecorder
from marketpipe.workflow.console import job_failed
from marketpipe.workflow.jobs import FetchFailed, job_error_is_permanent
from marketpipe.workflow.planning import symbols_label
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.vendors import open_clients

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
    with json_log_file(log_path), job_context(symbol=",".join(symbols), month="securities"):
        log_event(logger, "securities.start", f"securities of {symbols_label(symbols)}")
        try:
            if settings.config.vendor == "polygon":
                with open_clients(settings, recorder) as clients:
                    polygon = clients.bars
                    assert isinstance(polygon, PolygonClient)
                    rows, changed = refresh_securities(
                        settings.lake,
                        symbols,
                        lambda symbol: polygon_security(polygon, symbol, as_of, today),
                    )
            else:  # Alpaca's say is in the corporate actions the lake keeps
                rows, changed = refresh_securities(
                    settings.lake,
                    symbols,
                    lambda symbol: alpaca_security(
                        read_actions(settings.lake, symbol), symbol, today, settings.config.vendor
                    ),
                )
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
        _record(settings, symbols, error, permanent, started, recorder)
        if error:
            job_failed(error, permanent)
            logger.error(error, extra={"event": "job.failed"})
            raise FetchFailed(error)
    summary = {
        "checked_on": today.isoformat(),
        "as_of": as_of.isoformat(),
        "symbols": list(symbols),
        "changed": changed,
    }
    write_atomically(Path(marker), (json.dumps(summary, indent=2) + "\n").encode())
    return rows


def _record(
    settings: WorkflowSettings,
    symbols: tuple[str, ...],
    error: str | None,
    permanent: bool,
    started: float,
    recorder: MetricsRecorder,
) -> None:
    metrics = {key: stats.to_dict() for key, stats in recorder.snapshot().items()}
    with CheckpointStore(settings.state_dir) as store:
        store.record_job(
            JobRecord(
                run_id=current_run_id(),
                job=JOB_NAME,
                symbol=",".join(symbols),
                status="failed" if error else "ok",
                error=error,
                planned=0,
                missing=0,
                published=0,
                rows=0,
                rejected_rows=0,
                requests=sum(stats["requests"] for stats in metrics.values()),
                started_at=started,
                finished_at=time.time(),
                metrics=metrics,
                permanent=permanent,
            )
        )
