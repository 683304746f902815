"""Where the lake's files live: a local directory or an S3-compatible bucket, one interface.

Everything that reads or writes lake data goes through a :class:`LakeStore`, addressed by
keys relative to the lake's root (``ohlcv/symbol=AAPL/year=2024/.../bars.parquet``):

- :class:`LocalStore` writes to a temporary file, fsyncs it and renames it over the key;
- :class:`~marketpipe.lake.s3_store.S3Store` puts the final key in one PUT (S3 makes an
  object visible whole or not at all), lists with one LIST request per 1,000 keys, and takes
  a lease object with a conditional PUT (``If-None-Match: *``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from marketpipe.foundation.files import publish_staged, stage_file, write_atomically
from marketpipe.lake.s3_store import S3Store, s3_client
from marketpipe.lake.store_types import (
    ENDPOINT_VARIABLE,
    S3_MAX_CONNECTIONS,
    S3_SCHEME,
    FileStamp,
    LakeStore,
    MissingBucket,
    WriteConflict,
    is_s3,
)

__all__ = [
    "ENDPOINT_VARIABLE",
    "S3_MAX_CONNECTIONS",
    "S3_SCHEME",
    "LakeStore",
    "LocalStore",
    "MissingBucket",
    "S3Store",
    "WriteConflict",
    "is_s3",
    "lake_filesystem",
    "open_store",
    "s3_client",
]

# Local files staged by put_soon, per (lake root, thread), until that thread's flush.
_STAGED: dict[tuple[Path, int], list[tuple[Path, Path, str | None]]] = {}
_STAGING_LOCK = threading.Lock()


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

    def stamps(self, prefix: str) -> dict[str, FileStamp]:
        """Every file under ``prefix`` with its size and modification time (nanoseconds)."""
        stamps = {}
        for key in self.list(prefix):
            status = self.path(key).stat()
            stamps[key] = (status.st_size, str(status.st_mtime_ns))
        return stamps

    def first_key(self, prefix: str, name: str) -> str | None:
        """The first file called ``name`` met walking down from ``prefix``."""
        for directory, _, files in os.walk(self.path(prefix)):
            if name in files:
                return f"{Path(directory).relative_to(self.root).as_posix()}/{name}"
        return None

    def delete(self, key: str) -> None:
        """Remove the file if present."""
        self.path(key).unlink(missing_ok=True)

    def any(self, prefix: str) -> bool:
        """Whether the directory ``prefix`` exists and holds anything."""
        base = self.path(prefix)
        return base.is_dir() and any(base.iterdir())


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
