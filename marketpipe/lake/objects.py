"""Where the lake's files live: a local directory or an S3-compatible bucket, one interface.

Everything that reads or writes lake data goes through a :class:`LakeStore`, addressed by
keys relative to the lake's root (``ohlcv/symbol=AAPL/year=2024/.../bars.parquet``):

- :class:`LocalStore` writes to a temporary file, fsyncs it and renames it over the key;
- :class:`S3Store` puts the final key in one PUT (S3 makes an object visible whole or not
  at all), lists with one LIST request per 1,000 keys, and takes a lock object with a
  conditional PUT (``If-None-Match: *``).

The S3 endpoint is never guessed from a library's defaults: it is the one given, else
``$AWS_ENDPOINT_URL`` (pyarrow ignores that variable), else AWS itself. Credentials and
region come from the standard AWS variables and files, through boto3.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from marketpipe.chaos import crash_point
from marketpipe.foundation.files import publish_staged, stage_file, write_atomically
from marketpipe.lake.fencing import LEASE_KEY, check_fence

S3_SCHEME = "s3://"
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
# Requests in flight at once when a backfill uploads partitions (boto3's pool default).
S3_MAX_CONNECTIONS = 10
# Local files staged by put_soon, per (lake root, thread), until that thread's flush.
_STAGED: dict[tuple[Path, int], list[tuple[Path, Path, str | None]]] = {}
_STAGING_LOCK = threading.Lock()


class LakeStore(Protocol):
    """The lake's files, by key relative to its root."""

    @property
    def uri(self) -> str:
        """The root as the user wrote it (``data`` or ``s3://bucket/prefix``)."""
        ...

    @property
    def is_local(self) -> bool:
        """True for a directory on this machine."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """Make ``data`` visible at ``key`` at once: readers see the old bytes or the new.
        ``create_only``: a new object; where the lake is shared (S3) an existing object with
        other bytes is never overwritten (:class:`WriteConflict`), one with these bytes is
        left as it is (a writer that lost its lease cannot overwrite the new holder's work)."""
        ...

    def put_soon(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """Like :meth:`put`, possibly finishing in the background: the write is durable only
        once :meth:`flush` has returned."""
        ...

    def flush(self) -> None:
        """Wait until every :meth:`put_soon` is durable; raise the first that failed."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes at ``key`` (``FileNotFoundError`` when there are none)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object or file is at ``key``."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a directory-like prefix, recursive), sorted."""
        ...

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes (one listing)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    def any(self, prefix: str) -> bool:
        """Whether anything is stored under ``prefix`` (at most one small request)."""
        ...


class WriteConflict(RuntimeError):
    """A new object's key already holds other bytes (another writer was there first)."""


class MissingBucket(LookupError):
    """An S3 lake's bucket does not exist; the message names it and what to do."""


def is_s3(data_dir: str | Path) -> bool:
    """Whether a ``data_dir`` names an S3 location."""
    return str(data_dir).startswith(S3_SCHEME)


@dataclass(frozen=True)
class LocalStore:
    """A lake in a local directory."""

    root: Path

    @property
    def uri(self) -> str:
        """The root directory."""
        return str(self.root)

    @property
    def is_local(self) -> bool:
        """Always true."""
        return True

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / key

    def put(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """Temporary file, fsync, rename over the key, fsync the directory (a local lake has
        one writer by its ``flock``, so ``create_only`` needs no check here)."""
        write_atomically(self.path(key), data, crash_point_name)

    def put_soon(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """Stage the file beside ``key``: it is at ``key`` and durable once :meth:`flush`
        returns (a page's partitions share two syncs instead of two fsyncs each)."""
        staged = stage_file(self.path(key), data)
        with _STAGING_LOCK:
            _STAGED.setdefault((self.root, threading.get_ident()), []).append(
                (staged, self.path(key), crash_point_name)
            )

    def flush(self) -> None:
        """Publish the files this thread staged (see :func:`publish_staged`)."""
        with _STAGING_LOCK:
            staged = _STAGED.pop((self.root, threading.get_ident()), [])
        publish_staged(self.root, staged)

    def get(self, key: str) -> bytes:
        """The file's bytes."""
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Every file under ``prefix``, as keys, sorted (temporary files left out)."""
        base = self.path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for directory, _, files in os.walk(base):
            relative = Path(directory).relative_to(self.root).as_posix()
            keys.extend(f"{relative}/{name}" for name in files if not name.endswith(".tmp"))
        return sorted(keys)

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every file under ``prefix`` with its size in bytes."""
        return {key: self.path(key).stat().st_size for key in self.list(prefix)}

    def delete(self, key: str) -> None:
        """Remove the file if present."""
        self.path(key).unlink(missing_ok=True)

    def any(self, prefix: str) -> bool:
        """Whether the directory ``prefix`` exists and holds anything."""
        base = self.path(prefix)
        return base.is_dir() and any(base.iterdir())


class S3Store:
    """A lake under ``s3://bucket/prefix`` on S3 or any S3-compatible server."""

    def __init__(self, uri: str, endpoint_url: str | None = None, client: Any = None) -> None:
        """``endpoint_url`` (else ``$AWS_ENDPOINT_URL``, else AWS) is where requests go."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"data_dir {uri!r}: an S3 lake is written s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_VARIABLE) or None
        self._client = client
        self._uploads: concurrent.futures.ThreadPoolExecutor | None = None
        # Uploads handed over, per thread: each job flushes its own (jobs can be threads).
        self._pending: dict[int, list[concurrent.futures.Future[None]]] = {}
        self._pending_lock = threading.Lock()

    @property
    def uri(self) -> str:
        """``s3://bucket/prefix``."""
        return self._uri

    @property
    def is_local(self) -> bool:
        """Always false."""
        return False

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first use; safe to share between threads)."""
        if self._client is None:
            client = s3_client(self.endpoint_url)
            # The last check before a write leaves this process: a controller paused between
            # an earlier check and the request (SIGSTOP, a long GC) must not write late.
            client.meta.events.register("before-send.s3", self._fence_request)
            client.meta.events.register("after-call.s3", self._name_missing_bucket)
            self._client = client
        return self._client

    def _name_missing_bucket(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "NoSuchBucket":
            raise MissingBucket(
                f"config key data_dir: the bucket {self.bucket!r} of {self.uri} does not exist "
                "(or these credentials cannot see it); create it, or correct data_dir"
            )

    def _fence_request(self, request: Any, **_: Any) -> None:
        if request.method in ("PUT", "POST", "DELETE"):
            path = urlparse(request.url).path
            if not path.endswith(LEASE_KEY):
                check_fence(f"{request.method} {path}", self.uri)

    def object_key(self, key: str) -> str:
        """The bucket key of a lake key."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """One PUT of the final key: the object appears whole, or not at all."""
        if crash_point_name:
            crash_point(crash_point_name)
        check_fence(f"writing {key}", self.uri)
        if not create_only:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        elif self.put_conditionally(key, data) is None and self.get(key) != data:
            raise WriteConflict(
                f"{self.uri}/{key} was written meanwhile with other bytes by another writer; "
                "it is left as it is"
            )

    def put_soon(
        self,
        key: str,
        data: bytes,
        crash_point_name: str | None = None,
        *,
        create_only: bool = False,
    ) -> None:
        """Hand the PUT to a pool of uploads: a backfill is bound by bandwidth, not by one
        round trip per object. Durable once :meth:`flush` returns."""
        if crash_point_name:
            crash_point(crash_point_name)
        check_fence(f"writing {key}", self.uri)
        with self._pending_lock:
            if self._uploads is None:
                self._uploads = concurrent.futures.ThreadPoolExecutor(
                    S3_MAX_CONNECTIONS, thread_name_prefix="lake-upload"
                )
            upload = self._uploads.submit(self.put, key, data, create_only=create_only)
            self._pending.setdefault(threading.get_ident(), []).append(upload)

    def flush(self) -> None:
        """Wait for every upload this thread handed over; raise the first error."""
        with self._pending_lock:
            pending = self._pending.pop(threading.get_ident(), [])
        for future in pending:
            future.result()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """PUT only if no object is at ``key`` (``If-None-Match: *``); False if one is."""
        return self.put_conditionally(key, data) is not None

    def put_conditionally(self, key: str, data: bytes, if_match: str | None = None) -> str | None:
        """PUT if no object is at ``key`` (or, with ``if_match``, if the object still has that
        ETag); the new ETag, or None when the condition failed (someone else wrote first)."""
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=data, **condition
            )
        except Exception as exc:  # botocore's ClientError, without importing botocore here
            if _status(exc) in (404, 409, 412):
                return None
            raise
        return str(answer["ETag"])

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag (``FileNotFoundError`` when absent)."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(f"{self.uri}/{key}") from None
            raise
        return bytes(answer["Body"].read()), str(answer["ETag"])

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only if it still has ``etag``; False if it changed or is gone."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key), IfMatch=etag)
        except Exception as exc:
            if _status(exc) in (404, 412):
                return False
            raise
        return True

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        return self.get_with_etag(key)[0]

    def exists(self, key: str) -> bool:
        """A HEAD request (use :meth:`list` for many keys)."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``: one LIST request per 1,000 keys."""
        return sorted(key for key, _ in self._list(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes, from the same listing."""
        return dict(self._list(prefix))

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        start = self.object_key(prefix.rstrip("/") + "/") if prefix else self.object_key("")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", ()):
                yield item["Key"][strip:], int(item["Size"])

    def delete(self, key: str) -> None:
        """Remove the object if present."""
        check_fence(f"deleting {key}", self.uri)
        self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def any(self, prefix: str) -> bool:
        """One LIST request for at most one key."""
        answer = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self.object_key(prefix.rstrip("/") + "/"), MaxKeys=1
        )
        return bool(answer.get("KeyCount", 0))


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def s3_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client for ``endpoint_url`` (None: AWS), credentials from the environment."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ImportError(
            "an S3 lake needs boto3: pip install 'marketpipe[s3]' (or pip install boto3)"
        ) from None
    config = Config(max_pool_connections=S3_MAX_CONNECTIONS, retries={"mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


def lake_filesystem(lake: LakeStore) -> tuple[Any, str]:
    """A pyarrow filesystem and root path for reading the lake's files with pyarrow."""
    import pyarrow.fs as pafs

    if isinstance(lake, LocalStore):
        return pafs.LocalFileSystem(), str(lake.root.resolve())
    assert isinstance(lake, S3Store)
    options: dict[str, Any] = {"region": lake.client.meta.region_name}
    if lake.endpoint_url:
        parsed = urlparse(lake.endpoint_url)
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    import boto3

    credentials = boto3.Session().get_credentials()  # the chain the client uses
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(
            access_key=frozen.access_key, secret_key=frozen.secret_key, session_token=frozen.token
        )
    root = f"{lake.bucket}/{lake.prefix}".rstrip("/")
    return pafs.S3FileSystem(**options), root


def open_store(data_dir: str | Path, endpoint_url: str | None = None) -> LakeStore:
    """The store of a ``data_dir``: ``s3://bucket/prefix`` or a local directory."""
    if is_s3(data_dir):
        return S3Store(str(data_dir), endpoint_url)
    return LocalStore(Path(data_dir))
