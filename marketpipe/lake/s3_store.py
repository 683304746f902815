"""An S3 lake: objects under ``s3://bucket/prefix`` on S3 or any S3-compatible server.

Reads, listings and the lease's conditional writes go through boto3; every other write is a
:class:`~marketpipe.lake.s3_writes.FencedWriter` request whose signature expires with the
lease. The endpoint is never guessed from a library's defaults: it is the one given, else
``$AWS_ENDPOINT_URL`` (pyarrow ignores that variable), else AWS itself. Credentials and region
come from the standard AWS variables and files, through boto3.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from marketpipe.chaos import crash_point
from marketpipe.foundation.s3_errors import error_status
from marketpipe.lake.fencing import check_fence
from marketpipe.lake.s3_writes import FencedWriter
from marketpipe.lake.store_types import (
    ENDPOINT_VARIABLE,
    S3_MAX_CONNECTIONS,
    FileStamp,
    WriteConflict,
    missing_bucket,
)


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
        self._writer: FencedWriter | None = None
        self._setup_lock = threading.Lock()
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
        with self._setup_lock:
            if self._client is None:
                client = s3_client(self.endpoint_url)
                client.meta.events.register("after-call.s3", self._name_missing_bucket)
                self._client = client
            return self._client

    @property
    def writer(self) -> FencedWriter:
        """Where the lake's data writes go: signed to expire with the lease."""
        client = self.client
        with self._setup_lock:
            if self._writer is None:
                self._writer = FencedWriter(
                    self.uri,
                    self.bucket,
                    client,
                    lambda region: s3_client(self.endpoint_url, region),
                )
            return self._writer

    def _name_missing_bucket(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "NoSuchBucket":
            raise missing_bucket(self.bucket, self.uri)

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
        # The writer checks the fence as it signs (LeaseLost: "stopped before writing KEY").
        created = self.writer.put(key, self.object_key(key), data, create_only=create_only)
        if not created and self.get(key) != data:
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

    def put_conditionally(self, key: str, data: bytes, if_match: str | None = None) -> str | None:
        """PUT if no object is at ``key`` (or, with ``if_match``, if the object still has that
        ETag); the new ETag, or None when the condition failed (someone else wrote first).
        For the lease object, which is the fence itself: lake data goes through :meth:`put`."""
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=data, **condition
            )
        except Exception as exc:  # botocore's ClientError, without importing botocore here
            if error_status(exc) in (404, 409, 412):
                return None
            raise
        return str(answer["ETag"])

    def _get_object(self, key: str) -> dict[str, Any]:
        """S3's answer to a GET of ``key`` (``FileNotFoundError`` when absent)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if error_status(exc) == 404:
                raise FileNotFoundError(f"{self.uri}/{key}") from None
            raise

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag (``FileNotFoundError`` when absent)."""
        answer = self._get_object(key)
        return bytes(answer["Body"].read()), str(answer["ETag"])

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only if it still has ``etag``; False if it changed or is gone."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key), IfMatch=etag)
        except Exception as exc:
            if error_status(exc) in (404, 412):
                return False
            raise
        return True

    def get_with_age(self, key: str) -> tuple[bytes, float]:
        """The object's bytes and how many seconds ago it was last written, by the server's
        own clock (its ``Date`` less the object's ``Last-Modified``)."""
        answer = self._get_object(key)
        served = answer["ResponseMetadata"]["HTTPHeaders"].get("date")
        now = email.utils.parsedate_to_datetime(served) if served else answer["LastModified"]
        age = (now - answer["LastModified"]).total_seconds()
        return bytes(answer["Body"].read()), max(0.0, age)

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        return self.get_with_etag(key)[0]

    def exists(self, key: str) -> bool:
        """A HEAD request (use :meth:`list` for many keys)."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if error_status(exc) == 404:
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``: one LIST request per 1,000 keys."""
        return sorted(key for key, _ in self._list(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        """Every key under ``prefix`` with its size in bytes, from the same listing."""
        return {key: stamp[0] for key, stamp in self._list(prefix)}

    def stamps(self, prefix: str) -> dict[str, FileStamp]:
        """Every key under ``prefix`` with its size and ETag, from the same listing."""
        return dict(self._list(prefix))

    def _list(self, prefix: str, page_size: int = 1000) -> Iterator[tuple[str, FileStamp]]:
        start = self.object_key(prefix.rstrip("/") + "/") if prefix else self.object_key("")
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=start, PaginationConfig={"PageSize": page_size}
        )
        for page in pages:
            for item in page.get("Contents", ()):
                etag = str(item.get("ETag", "")).strip('"')
                yield item["Key"][strip:], (int(item["Size"]), etag)

    def first_key(self, prefix: str, name: str) -> str | None:
        """The first key called ``name`` in the listing of ``prefix`` (its first page
        almost always holds one)."""
        for key, _ in self._list(prefix, page_size=100):
            if key.rsplit("/", 1)[-1] == name:
                return key
        return None

    def delete(self, key: str) -> None:
        """Remove the object if present (the writer checks the fence as it signs)."""
        self.writer.delete(key, self.object_key(key))

    def any(self, prefix: str) -> bool:
        """One LIST request for at most one key."""
        answer = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=self.object_key(prefix.rstrip("/") + "/"), MaxKeys=1
        )
        return bool(answer.get("KeyCount", 0))


def s3_client(endpoint_url: str | None, region: str | None = None) -> Any:
    """A boto3 S3 client for ``endpoint_url`` (None: AWS), credentials from the environment,
    in ``region`` (None: the environment's)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ImportError(
            "an S3 lake needs boto3: pip install 'marketpipe[s3]' (or pip install boto3)"
        ) from None
    config = Config(
        max_pool_connections=S3_MAX_CONNECTIONS,
        retries={"mode": "standard"},
        signature_version="s3v4",  # presigned writes too: their expiry is the fence's deadline
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
