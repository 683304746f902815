"""Where a lake (or its state) may live, checked before anything is created or requested.

A local directory has ``~`` expanded, must not be a file, must be writable and, when it does
not exist yet, have a parent that does;
an S3 location is written ``s3://bucket/prefix``. The checks create nothing that stays.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from marketpipe.lake.objects import S3Store

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_lake_location(value: str, read_only: bool = False) -> str:
    """``value`` normalised (``~`` expanded), or ValueError saying what is wrong and what to do;
    ``read_only``: an existing local lake need only be readable (for reading commands)."""
    text = value.strip()
    scheme = _URI_SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:  # a one-letter "scheme" is a Windows drive
        name = scheme.group(1).lower()
        if name == "s3" and not text.startswith("s3://"):
            rest = text[3:].lstrip("/")
            raise ValueError(f"{value!r} is not an S3 location; did you mean 's3://{rest}'?")
        if name != "s3":
            raise ValueError(
                f"{value!r}: {name}:// is not supported; use a local directory or s3://bucket/prefix"
            )
        S3Store(text)  # names a malformed URI
        return text
    path = Path(os.path.expanduser(text))
    if read_only and path.is_dir() and os.access(path, os.R_OK | os.X_OK):
        return str(path)
    return str(check_local_directory(text))


def is_writable_directory(path: Path) -> bool:
    """Whether files can be created in ``path`` (a real attempt: permissions alone do not
    tell on read-only mounts)."""
    try:
        with tempfile.TemporaryDirectory(dir=path, prefix=".marketpipe-check-"):
            return True
    except OSError:
        return False


def check_local_directory(value: str) -> Path:
    """A local directory that is, or can be, created and written (nothing is left behind)."""
    path = Path(os.path.expanduser(value))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a directory; name a directory")
    existing = path if path.exists() else path.parent
    if not existing.exists():
        # A typo in a mount point (/mnt/dat/lake) would otherwise become a new tree.
        raise ValueError(
            f"{path} cannot be created: {existing} does not exist (MarketPipe creates the "
            "lake's own directory, not the ones above it); create it or fix the path"
        )
    if not existing.is_dir():
        raise ValueError(f"{path} cannot be created: {existing} is a file")
    try:  # a real attempt: permissions alone do not tell (read-only mounts, /proc, ACLs)
        with tempfile.TemporaryDirectory(dir=existing, prefix=".marketpipe-check-"):
            pass
    except OSError as exc:
        raise ValueError(
            f"{path} cannot be created or written ({exc.strerror} in {existing}); "
            "choose a directory you can write"
        ) from None
    return path
