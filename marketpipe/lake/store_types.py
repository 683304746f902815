"""What every lake store offers, and the errors and settings they share."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

S3_SCHEME = "s3://"
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"
# Requests in flight at once when a backfill uploads partitions (boto3's pool default).
S3_MAX_CONNECTIONS = 10
# A file's size and a version that changes whenever its bytes are replaced: the modification
# time in nanoseconds of a local file, the ETag of an S3 object.
FileStamp = tuple[int, str]


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

    def stamps(self, prefix: str) -> dict[str, FileStamp]:
        """Every key under ``prefix`` with its :data:`FileStamp` (one listing)."""
        ...

    def first_key(self, prefix: str, name: str) -> str | None:
        """Some key under ``prefix`` whose last part is ``name`` (``None``: none), found
        without listing everything."""
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


def missing_bucket(bucket: str, lake_uri: str) -> MissingBucket:
    """The error for an S3 lake whose bucket does not exist."""
    return MissingBucket(
        f"config key data_dir: the bucket {bucket!r} of {lake_uri} does not exist "
        "(or these credentials cannot see it); create it, or correct data_dir"
    )
