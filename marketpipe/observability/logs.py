"""Structured JSON logging: one object per line, with the run id, job context and no secrets."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

REDACTED = "***"
RUN_ID_VARIABLE = "MARKETPIPE_RUN_ID"
RUN_STARTED_VARIABLE = "MARKETPIPE_RUN_STARTED"  # epoch seconds, for progress and rates
RUN_JOBS_VARIABLE = "MARKETPIPE_RUN_JOBS"  # the jobs a run planned, for its summary
SECRET_VARIABLES = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_API_OAUTH_TOKEN")
_handed_over: list[str] = []  # the run id handed to the next workflow of this process
_job_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "marketpipe_job", default=None
)


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261126T103700Z-3f9a1c``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def current_run_id() -> str:
    """This run's id, shared by every job of one Snakemake invocation (set on first use)."""
    # Every log record asks: make a new id only when there is none.
    return os.environ.get(RUN_ID_VARIABLE) or os.environ.setdefault(RUN_ID_VARIABLE, new_run_id())


def hand_over_run() -> str:
    """A new run id for the workflow this process runs next (``marketpipe update`` runs
    Snakemake in-process): that workflow adopts it, once."""
    run_id = os.environ[RUN_ID_VARIABLE] = new_run_id()
    _handed_over[:] = [run_id]
    return run_id


def workflow_run_id() -> str:
    """The run id of a workflow's main process: the one handed over to it in this process,
    else a new one, never one inherited from an earlier run (its jobs inherit this one
    through the environment)."""
    handed = _handed_over[:1]
    _handed_over.clear()
    if handed and os.environ.get(RUN_ID_VARIABLE) == handed[0]:
        return handed[0]
    run_id = os.environ[RUN_ID_VARIABLE] = new_run_id()
    return run_id


@contextmanager
def job_context(**fields: str) -> Iterator[None]:
    """Attach fields (symbol, month ...) to every record logged by this thread meanwhile."""
    token = _job_context.set(fields)
    try:
        yield
    finally:
        _job_context.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``run_id``, a default ``event`` and the current job's fields to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record (never drops it)."""
        record.run_id = current_run_id()
        if not getattr(record, "event", None):
            record.event = "log"
        for name, value in (_job_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class SecretScrubber(logging.Filter):
    """Defence in depth: replaces known secret values anywhere in a record's text."""

    def __init__(self, secret_values: Iterable[str]) -> None:
        super().__init__()
        self.secret_values = [value for value in secret_values if value and len(value) >= 4]

    @classmethod
    def from_environment(cls) -> SecretScrubber:
        """Scrub the credentials found in the ``APCA_*`` environment variables."""
        return cls(os.environ.get(name, "") for name in SECRET_VARIABLES)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secret_values:
                value = value.replace(secret, REDACTED)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the message, its arguments and string attributes."""
        if not self.secret_values:
            return True
        record.msg = self._scrub(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self._scrub(arg) for arg in args)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name not in ("msg",):
                setattr(record, name, self._scrub(value))
        return True


def json_formatter() -> logging.Formatter:
    """The JSON line format: timestamp, level, logger, event, run id, message, extras."""
    return JsonFormatter(
        "{levelname}{name}{event}{run_id}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
        json_ensure_ascii=False,
    )


_log_owner: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "marketpipe_log_owner", default=None
)


class _OwnContextOnly(logging.Filter):
    """Jobs run as threads of one process: keep each job's log to its own records, including
    those of helper threads started with a copy of the job's context."""

    def __init__(self, owner: object) -> None:
        super().__init__()
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        return _log_owner.get() is self.owner


class _PackageLevel:
    """Holds the ``marketpipe`` logger at INFO while any job log is open, then restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._previous = logging.NOTSET

    def __enter__(self) -> None:
        with self._lock:
            package = logging.getLogger("marketpipe")
            if self._active == 0:
                self._previous = package.level
                if package.getEffectiveLevel() > logging.INFO:
                    package.setLevel(logging.INFO)
            self._active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                logging.getLogger("marketpipe").setLevel(self._previous)


_PACKAGE_LEVEL = _PackageLevel()


def _json_file_handler(path: Path | str, mode: str) -> logging.Handler:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode=mode, encoding="utf-8")
    handler.setFormatter(json_formatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretScrubber.from_environment())
    return handler


@contextmanager
def json_log_file(
    path: Path | str, *, this_thread_only: bool = True, mode: str = "w"
) -> Iterator[None]:
    """Write ``marketpipe`` records (INFO and up) as JSON lines to ``path`` meanwhile.

    With ``this_thread_only``, only records logged in this context count: this thread's, and
    those of threads it starts with ``contextvars.copy_context()``.
    """
    handler = _json_file_handler(path, mode)
    owner_token = None
    if this_thread_only:
        owner = object()
        owner_token = _log_owner.set(owner)
        handler.addFilter(_OwnContextOnly(owner))
    package = logging.getLogger("marketpipe")
    package.addHandler(handler)
    try:
        with _PACKAGE_LEVEL:
            yield
    finally:
        package.removeHandler(handler)
        handler.close()
        if owner_token is not None:
            _log_owner.reset(owner_token)


def log_event(logger: logging.Logger, event: str, message: str, **fields: Any) -> None:
    """Log one INFO event with structured fields."""
    logger.info(message, extra={"event": event, **fields})
