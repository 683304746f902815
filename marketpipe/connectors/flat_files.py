"""Massive (Polygon.io) flat files: each day's minute bars of every US stock in one file.

The vendor publishes ``us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`` in an
S3-compatible bucket (``flatfiles`` at ``https://files.massive.com``), reached with S3 keys
of their own (``POLYGON_S3_ACCESS_KEY_ID`` / ``POLYGON_S3_SECRET_ACCESS_KEY``, or the
``MASSIVE_`` names), not the REST key. Columns ``ticker,volume,open,close,high,low,
window_start,transactions``; ``window_start`` is the bar's start in epoch nanoseconds; prices
are unadjusted and a ticker is listed as traded that day. A day's file is ready the next
morning and replaced when the vendor corrects it (a new ETag).

A file is far larger than a universe's share of it, so it is streamed: decompressed and
parsed block by block, and only the wanted tickers' rows are kept.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marketpipe.connectors.config import (
    NonEmptySecret,
    validate_base_url,
    with_environment_defaults,
)
from marketpipe.connectors.errors import (
    ApiError,
    AuthenticationError,
    ConnectorError,
    ResponseFormatError,
    RetryExhaustedError,
    SubscriptionError,
)
from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.connectors.retry import RetryPolicy
from marketpipe.foundation.s3_errors import error_code, error_status
from marketpipe.observability.metrics import MetricsRecorder

FLAT_FILE_COLUMNS: dict[str, pa.DataType] = {
    "ticker": pa.string(),
    "volume": pa.float64(),
    "open": pa.float64(),
    "close": pa.float64(),
    "high": pa.float64(),
    "low": pa.float64(),
    "window_start": pa.int64(),
    "transactions": pa.int64(),
}
_ENDPOINT = "flat_files"
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_REFUSED = {"AccessDenied", "403", "Forbidden"}
_BAD_KEYS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "401"}


class FlatFilesConfig(BaseModel):
    """Where the flat files are and the S3 keys that open them (from the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    ENV_ACCESS_KEY_ID: ClassVar[tuple[str, ...]] = (
        "POLYGON_S3_ACCESS_KEY_ID",
        "MASSIVE_S3_ACCESS_KEY_ID",
    )
    ENV_SECRET_ACCESS_KEY: ClassVar[tuple[str, ...]] = (
        "POLYGON_S3_SECRET_ACCESS_KEY",
        "MASSIVE_S3_SECRET_ACCESS_KEY",
    )
    DEFAULT_ENDPOINT: ClassVar[str] = "https://files.massive.com"
    DEFAULT_BUCKET: ClassVar[str] = "flatfiles"
    DEFAULT_PREFIX: ClassVar[str] = "us_stocks_sip/minute_aggs_v1"

    endpoint_url: str = Field(DEFAULT_ENDPOINT, description="The flat files' S3 endpoint")
    bucket: str = Field(DEFAULT_BUCKET, min_length=3, description="The flat files' bucket")
    prefix: str = Field(DEFAULT_PREFIX, min_length=1, description="The data set's key prefix")
    access_key_id: NonEmptySecret = Field(description="S3 access key id for the flat files")
    secret_access_key: NonEmptySecret = Field(description="S3 secret access key")
    max_attempts: int = Field(5, ge=1, le=20, description="Reads of one file, first included")
    block_bytes: int = Field(
        4 << 20, ge=1 << 16, le=1 << 28, description="Decompressed bytes parsed per block"
    )

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return validate_base_url(value)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any) -> Any:
        sources = {
            "access_key_id": cls.ENV_ACCESS_KEY_ID,
            "secret_access_key": cls.ENV_SECRET_ACCESS_KEY,
        }
        return with_environment_defaults(
            data, sources, required=("access_key_id", "secret_access_key")
        )


@dataclass(frozen=True)
class DayFile:
    """The wanted tickers' bars of one day's file, and the file's version (its ETag)."""

    day: dt.date
    key: str
    etag: str
    bars: pa.Table  # canonical OHLCV rows; ``symbol`` is the ticker as traded that day


def flat_file_key(prefix: str, day: dt.date) -> str:
    """The object key of ``day``'s file under ``prefix``."""
    return f"{prefix.strip('/')}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"


class FlatFilesClient:
    """Reads days' flat files; ``None`` for a day whose file is not published yet."""

    vendor: ClassVar[str] = "polygon"

    def __init__(
        self,
        config: FlatFilesConfig,
        s3: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.config = config
        self._s3 = s3
        self._sleep = sleep
        self.metrics = metrics or MetricsRecorder()
        # The transport's curve (full jitter); boto3 retries the requests themselves.
        self._backoff = RetryPolicy(config.max_attempts, float("inf"), base=0.5, cap=30.0)

    @property
    def s3(self) -> Any:
        """The boto3 client for the endpoint (made on first use)."""
        if self._s3 is None:
            self._s3 = _s3_client(self.config)
        return self._s3

    def key(self, day: dt.date) -> str:
        """The object key of ``day``'s file."""
        return flat_file_key(self.config.prefix, day)

    def etag(self, day: dt.date) -> str | None:
        """The current version of ``day``'s file (one HEAD request), ``None`` if absent."""
        key = self.key(day)
        started = time.perf_counter()
        try:
            answer = self.s3.head_object(Bucket=self.config.bucket, Key=key)
        except Exception as exc:  # botocore's ClientError, without importing botocore here
            self._attempt(started, error_status(exc) or type(exc).__name__)
            if error_code(exc) in _NOT_FOUND:
                return None
            raise self._explained(exc, key) from None
        self._attempt(started, 200)
        return str(answer["ETag"])

    def read_day(self, day: dt.date, tickers: Collection[str]) -> DayFile | None:
        """``tickers``' bars in ``day``'s file, read whole (a dropped connection reads the
        file again, up to ``max_attempts`` times); ``None`` if it is not published yet."""
        key = self.key(day)
        wanted = pa.array(sorted(set(tickers)), pa.string())
        attempt = 1
        while True:
            try:
                return self._read(day, key, wanted)
            except _Interrupted as interrupted:
                if attempt >= self.config.max_attempts:
                    raise RetryExhaustedError(
                        _ENDPOINT, attempt, interrupted.cause, f"reading {key} kept failing"
                    ) from None
                delay = self._backoff.backoff(attempt)
                self.metrics.retry(self.vendor, _ENDPOINT, "interrupted", delay)
                self._sleep(delay)
                attempt += 1

    def _read(self, day: dt.date, key: str, wanted: pa.Array) -> DayFile | None:
        started = time.perf_counter()
        try:
            answer = self.s3.get_object(Bucket=self.config.bucket, Key=key)
        except Exception as exc:
            self._attempt(started, error_status(exc) or type(exc).__name__)
            if error_code(exc) in _NOT_FOUND:
                return None
            if _is_transient(exc):
                raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
            raise self._explained(exc, key) from None
        body = answer["Body"]
        try:
            bars = _parse(body, key, wanted, self.config.block_bytes)
        except ResponseFormatError:
            raise
        except Exception as exc:
            self._attempt(started, type(exc).__name__)
            if _is_transient(exc):
                raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
            raise ResponseFormatError(f"{key}: not a readable gzipped CSV ({exc})") from None
        finally:
            body.close()
        self._attempt(started, 200, int(answer.get("ContentLength") or 0))
        self.metrics.page(self.vendor, _ENDPOINT, bars.num_rows)
        return DayFile(day=day, key=key, etag=str(answer["ETag"]), bars=bars)

    def _attempt(self, started: float, status: int | str, size: int = 0) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.attempt(self.vendor, _ENDPOINT, status, latency_ms, size)

    def _explained(self, exc: Exception, key: str) -> ConnectorError:
        """A refused request as the connector error that says what to check."""
        code = error_code(exc)
        if code in _BAD_KEYS:
            names = (
                f"{FlatFilesConfig.ENV_ACCESS_KEY_ID[0]} and "
                f"{FlatFilesConfig.ENV_SECRET_ACCESS_KEY[0]} (or the MASSIVE_S3_ names)"
            )
            return AuthenticationError(
                401, f"the flat files' endpoint refused the S3 keys ({code}): check {names}", key
            )
        if code in _REFUSED:
            return SubscriptionError(
                403,
                f"reading {key} was refused ({code}): flat files need a plan that includes "
                "them, and the S3 keys from the vendor's dashboard (not the REST key)",
                key,
            )
        return ApiError(error_status(exc) or 0, f"reading {key} failed: {code or exc}", _ENDPOINT)

    def close(self) -> None:
        """Close the S3 client's connections."""
        if self._s3 is not None:
            self._s3.close()

    def __enter__(self) -> FlatFilesClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Interrupted(Exception):
    """A read that broke off on the way (connection reset, timeout, short body)."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _parse(body: Any, key: str, wanted: pa.Array, block_bytes: int) -> pa.Table:
    """The wanted tickers' rows of a gzipped CSV stream, as canonical OHLCV rows sorted by
    ticker and time."""
    source = pa.input_stream(pa.PythonFile(body, mode="r"), compression="gzip")
    reader = pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(block_size=block_bytes),
        convert_options=pa_csv.ConvertOptions(
            column_types=FLAT_FILE_COLUMNS, include_columns=list(FLAT_FILE_COLUMNS)
        ),
    )
    missing = [name for name in FLAT_FILE_COLUMNS if name not in reader.schema.names]
    if missing:
        raise ResponseFormatError(f"{key}: the file lacks column(s) {', '.join(missing)}")
    kept: list[pa.RecordBatch] = []
    try:
        for batch in reader:
            mask = pc.is_in(batch.column("ticker"), value_set=wanted)
            if pc.any(mask).as_py():
                kept.append(batch.filter(mask))
    except pa.ArrowInvalid as exc:
        raise ResponseFormatError(f"{key}: a row is malformed: {exc}") from None
    rows = pa.Table.from_batches(kept, schema=reader.schema)
    empty = [name for name in FLAT_FILE_COLUMNS if rows[name].null_count]
    if empty:
        raise ResponseFormatError(f"{key}: a wanted row has no {', '.join(empty)}")
    table = pa.Table.from_arrays(
        [
            rows["ticker"],
            rows["window_start"].cast(pa.timestamp("ns", tz="UTC")),
            rows["open"],
            rows["high"],
            rows["low"],
            rows["close"],
            rows["volume"],
            rows["transactions"],
            pa.nulls(rows.num_rows, pa.float64()),  # the files carry no VWAP
        ],
        schema=OHLCV_SCHEMA,
    )
    return table.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def _is_transient(exc: Exception) -> bool:
    """A broken connection, a timeout, a short body or a server error: worth reading again."""
    names = {kind.__name__ for kind in type(exc).__mro__}
    transient = {
        "ConnectionError",
        "ConnectionClosedError",
        "EndpointConnectionError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "IncompleteReadError",
        "ResponseStreamingError",
        "ProtocolError",
        "TimeoutError",
    }
    status = error_status(exc)
    return bool(names & transient) or (status is not None and status >= 500)


def _s3_client(config: FlatFilesConfig) -> Any:
    """A boto3 client for the flat files' endpoint, with the flat files' own keys."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ImportError(
            "flat files need boto3: pip install 'marketpipe[s3]' (or pip install boto3)"
        ) from None
    return boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        aws_access_key_id=config.access_key_id.get_secret_value(),
        aws_secret_access_key=config.secret_access_key.get_secret_value(),
        region_name="us-east-1",
        config=Config(
            retries={"mode": "standard", "max_attempts": config.max_attempts},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
        ),
    )
