"""``marketpipe migrate``: bring a lake written by an earlier release to the current format.

Earlier releases stored the symbol column inside each file as well as in its path, which
``pandas.read_parquet(lake)`` cannot merge. Each such file is rewritten without the column,
atomically, to exactly the bytes the current release writes. For a partition the ledger
first records the new hash and a history row, then the file is replaced: an interrupted
migration is finished by running it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.consolidated import invalidate_months
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import (
    LAKE_DIR,
    PARTITION_FILE,
    QUARANTINE_DIR,
    QUARANTINE_FILE,
    parquet_bytes,
    partition_of,
    read_verified,
    without_symbol,
)
from marketpipe.observability.logs import current_run_id
from marketpipe.observability.progress import with_progress
from marketpipe.workflow.settings import WorkflowSettings

MIGRATION_REASON = "migrated to the current file format (symbol in the path, page checksums)"


@dataclass(frozen=True)
class MigrationResult:
    """How many files were rewritten, and how many were already current."""

    partitions: int
    quarantine_files: int
    current: int


def _new_bytes(path: Path) -> bytes | None:
    """The file's bytes in the current format (no symbol column, page checksums ...), or
    ``None`` when it already is: the same rows and metadata written as this release writes."""
    current = path.read_bytes()
    table = read_verified(pa.BufferReader(current), str(path))
    metadata = {
        key.decode(): value.decode()
        for key, value in (table.schema.metadata or {}).items()
        if key.startswith(b"marketpipe.")
    }
    rewritten = parquet_bytes(without_symbol(table), metadata)
    return None if rewritten == current else rewritten


def migrate_lake(settings: WorkflowSettings) -> MigrationResult:
    """Rewrite every partition and quarantine file that still holds the symbol column
    (local lakes: releases that wrote the old format could not write to S3)."""
    if not settings.lake.is_local:
        return MigrationResult(0, 0, 0)
    root, state_dir = Path(settings.lake.uri), settings.state_dir
    partitions = quarantined = current = 0
    with settings.run_lock("marketpipe migrate"), CheckpointStore(state_dir) as store:
        paths = sorted((root / LAKE_DIR).rglob(PARTITION_FILE))
        for path in with_progress(paths, len(paths), "migrating"):
            data = _new_bytes(path)
            if data is None:
                current += 1
                continue
            located = partition_of(path)
            entry = store.ledger(located[0], [located[1]]).get(located[1]) if located else None
            new_sha = hashlib.sha256(data).hexdigest()
            if entry is not None and entry.sha256 != new_sha:
                store.replace(
                    entry,
                    dataclasses.replace(entry, sha256=new_sha),
                    MIGRATION_REASON,
                    current_run_id(),
                )
            if located is not None:
                invalidate_months(settings.lake, store, located[0], [located[1]])
            write_atomically(path, data)
            partitions += 1
        for path in sorted((root / QUARANTINE_DIR).rglob(QUARANTINE_FILE)):
            data = _new_bytes(path)
            if data is None:
                current += 1
                continue
            write_atomically(path, data)
            quarantined += 1
    return MigrationResult(partitions, quarantined, current)
