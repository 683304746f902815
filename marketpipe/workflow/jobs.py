"""The functions Snakemake rules call; each is usable (and tested) without Snakemake."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from marketpipe.checkpoints import CheckpointStore
from marketpipe.connectors import ConnectorError
from marketpipe.ingest import IngestReport, StreamSettings, ingest_days
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.vendors import open_client


class FetchFailed(RuntimeError):
    """A (symbol, month) job could not fetch its bars; the message says which and why."""


class _CurrentThreadOnly(logging.Filter):
    """Jobs run as threads of one process: keep each job's log to its own records."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


class _LevelWhileJobsRun:
    """Lowers the package logger to INFO while at least one job runs, then restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._previous = logging.NOTSET

    def __enter__(self) -> None:
        with self._lock:
            package_logger = logging.getLogger("marketpipe")
            if self._active == 0:
                self._previous = package_logger.level
                if package_logger.getEffectiveLevel() > logging.INFO:
                    package_logger.setLevel(logging.INFO)
            self._active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                logging.getLogger("marketpipe").setLevel(self._previous)


_JOB_LEVEL = _LevelWhileJobsRun()


@contextmanager
def job_log(path: Path | str) -> Iterator[None]:
    """Send this thread's ``marketpipe`` log records to ``path`` while the job runs."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_CurrentThreadOnly())
    package_logger = logging.getLogger("marketpipe")
    package_logger.addHandler(handler)
    try:
        with _JOB_LEVEL:
            yield
    finally:
        package_logger.removeHandler(handler)
        handler.close()


def stream_settings(settings: WorkflowSettings) -> StreamSettings:
    """The provenance of the bars this configuration fetches."""
    return StreamSettings(
        vendor=settings.config.vendor,
        timeframe=settings.timeframe,
        feed=settings.config.alpaca.feed,
        adjustment=settings.config.alpaca.adjustment,
    )


def fetch_partitions(
    settings: WorkflowSettings, symbol: str, days: Sequence[dt.date | str], log_path: Path | str
) -> IngestReport:
    """Fetch and publish ``symbol``'s missing partitions among ``days``.

    Raises :class:`FetchFailed` naming the symbol, the days and the vendor's error.
    """
    wanted = sorted(day if isinstance(day, dt.date) else dt.date.fromisoformat(day) for day in days)
    label = f"{symbol} {wanted[0]}..{wanted[-1]}" if wanted else symbol
    logger = logging.getLogger("marketpipe.workflow")
    with job_log(log_path):
        try:
            with CheckpointStore(settings.data_dir) as store, open_client(settings) as client:
                store.claim_settings(settings.lake_settings())
                report = ingest_days(
                    client, store, settings.data_dir, symbol, wanted, stream_settings(settings)
                )
        except (ConnectorError, ValueError) as exc:
            logger.error("fetching %s failed: %s", label, exc)
            raise FetchFailed(f"fetching {label} failed: {exc}") from None
        logger.info(
            "%s: %d of %d partitions were missing; %d published with %d request(s), "
            "%d row(s) quarantined",
            label,
            report.missing_days,
            report.planned_days,
            len(report.published),
            report.requests,
            report.rejected_rows,
        )
    return report
