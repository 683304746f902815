"""Where a lake (or its state) may live, checked before anything is created or requested.

A local directory has ``~`` expanded, must not be a file and must be creatable and writable;
an S3 location is written ``s3://bucket/prefix``. The checks create nothing that stays.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from marketpipe.lake.objects import S3Store

_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_lake_location(value: str) -> str:
    """``value`` normalised (``~`` expanded), or ValueError saying what is wrong and what to do."""
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
    return str(check_local_directory(text))


def check_local_directory(value: str) -> Path:
    """A local directory that is, or can be, created and written (nothing is left behind)."""
    path = Path(os.path.expanduser(value))
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a directory; name a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
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
