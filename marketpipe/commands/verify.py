"""``marketpipe verify``: is every partition the file the ledger recorded, and sane?"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.commands.common import require_lake
from marketpipe.connectors import OHLCV_SCHEMA
from marketpipe.ingest import new_york_day_keys
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import LAKE_DIR, PARTITION_FILE, file_sha256, partition_path
from marketpipe.workflow.settings import WorkflowSettings

_PARTITION = re.compile(
    r"symbol=(?P<symbol>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/"
    + re.escape(PARTITION_FILE)
    + "$"
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or one ledger row)."""

    path: Path
    problem: str


@dataclass(frozen=True)
class VerifyResult:
    """How many files were checked and what was wrong."""

    checked: int
    problems: list[Problem]


def _check_contents(path: Path, symbol: str, day: dt.date) -> str | None:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable Parquet ({type(exc).__name__}: {str(exc)[:120]})"
    expected = OHLCV_SCHEMA.remove_metadata()
    if not table.schema.remove_metadata().equals(expected):
        return "schema differs from the canonical OHLCV schema"
    if table.num_rows == 0:
        return None
    if not pc.all(pc.equal(table["symbol"], symbol)).as_py():
        return f"holds rows of another symbol than {symbol}"
    wanted = day.year * 10_000 + day.month * 100 + day.day
    keys = new_york_day_keys(table)
    wrong = pc.sum(pc.not_equal(keys, wanted)).as_py()
    if wrong:
        return f"{wrong} row(s) belong to another New York day than {day}"
    return None


def verify_lake(settings: WorkflowSettings) -> VerifyResult:
    """Re-hash every partition against the ledger and check schema and row placement."""
    require_lake(settings)
    root = settings.data_dir
    problems: list[Problem] = []
    checked = 0
    seen: set[tuple[str, dt.date]] = set()
    with CheckpointStore(root) as store:
        ledger = {(entry.symbol, entry.day): entry for entry in store.all_entries()}
    for path in sorted((root / LAKE_DIR).rglob(PARTITION_FILE)):
        checked += 1
        match = _PARTITION.search(path.as_posix())
        if match is None:
            problems.append(Problem(path, "not at a symbol=/year=/month=/day= path"))
            continue
        symbol = match["symbol"]
        try:
            day = dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
        except ValueError:
            problems.append(Problem(path, "the path names no valid date"))
            continue
        seen.add((symbol, day))
        entry = ledger.get((symbol, day))
        if entry is None:
            problems.append(Problem(path, "no ledger row records this file"))
        elif file_sha256(path) != entry.sha256:
            problems.append(Problem(path, "content differs from the ledger (sha256 mismatch)"))
        issue = _check_contents(path, symbol, day)
        if issue:
            problems.append(Problem(path, issue))
    for (symbol, day), _entry in sorted(ledger.items()):
        if (symbol, day) not in seen:
            path = partition_path(root, symbol, day)
            problems.append(Problem(path, "recorded in the ledger but the file is missing"))
    return VerifyResult(checked, problems)
