"""The Parquet lake: hive partition paths and atomic, deterministic file writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.connectors.models import OHLCV_SCHEMA
from marketpipe.lake.objects import LakeStore, LocalStore, S3Store, open_store

LAKE_DIR = "ohlcv"
SYMBOL_COLUMN = "symbol"
SYMBOL_KEY = "marketpipe.symbol"  # key-value metadata: a file read on its own names its symbol
DAY_KEY = "marketpipe.day"
ADJUSTMENT_KEY = "marketpipe.adjustment"  # raw, or what the vendor adjusted the bars for
# A partition file holds every canonical column but the symbol, which its path carries
# (hive style, as Hive, Spark, pandas and DuckDB write): with the column in both places,
# pandas.read_parquet(lake) cannot merge the two types.
LAKE_SCHEMA = OHLCV_SCHEMA.remove(OHLCV_SCHEMA.get_field_index(SYMBOL_COLUMN))
QUARANTINE_DIR = "quarantine"
PARTITION_FILE = "bars.parquet"
QUARANTINE_FILE = "rejected.parquet"
# The file of one symbol-day in each area (trades and quotes: see marketpipe.lake.ticks).
_FILE_OF = {
    LAKE_DIR: PARTITION_FILE,
    QUARANTINE_DIR: QUARANTINE_FILE,
    "trades": "trades.parquet",
    "quotes": "quotes.parquet",
}
REASON_COLUMN = "reason"  # why a quarantined row was rejected
# Fixed writer options: the same rows always give the same bytes (for one pyarrow version).
WRITER_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "version": "2.6",
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
    "store_schema": True,
    # A CRC per page: a flipped bit is an error when the file is read, never wrong rows.
    "write_page_checksum": True,
}
S3_PREFIX = "s3://"
REPAIR = (
    "MarketPipe reads no rows from it. Repair: `marketpipe update` (or the workflow) moves it "
    "aside to _damaged/ and fetches it again; `marketpipe refresh` replaces it at once"
)
# The areas whose files are repaired otherwise (lake.month_sources, lake.news, lake.actions
# name them; tests/test_consolidation.py checks that they agree).
REPAIRED_AREAS = ("ohlcv_monthly", "news", "corporate_actions")
_REPAIRS = {
    ("ohlcv_monthly", False): "a month file is only a copy of its day files (reads use them "
    "meanwhile): `marketpipe update` (or the workflow) moves it aside and builds it again",
    ("ohlcv_monthly", True): "a month file is only a copy of its day files (reads use them "
    "meanwhile): `marketpipe consolidate` builds it again",
    ("news", False): REPAIR,
    ("news", True): "on S3, remove the object: the next run fetches that day's news again",
    ("corporate_actions", False): "Repair: `marketpipe update` (or the workflow) moves it aside "
    "and fetches the symbol's corporate actions again",
    ("corporate_actions", True): "the next day's corporate-actions check fetches the symbol's "
    "actions again (it trusts only a file whose bytes the ledger recorded)",
    ("ohlcv", True): "MarketPipe reads no rows from it. Repair on S3: `marketpipe refresh "
    "--symbols SYMBOL --start DAY --end DAY` fetches it again and replaces it (`marketpipe "
    "update` does not look for damage on S3; `marketpipe verify` names every damaged file)",
}


def repair_advice(where: str) -> str:
    """How to repair the damaged file at ``where`` (a local path or an ``s3://`` URI)."""
    on_s3 = where.startswith(S3_PREFIX)
    for area in REPAIRED_AREAS:
        if f"/{area}/" in f"/{where}":
            return _REPAIRS[(area, on_s3)]
    return _REPAIRS[("ohlcv", True)] if on_s3 else REPAIR


class DamagedFileError(OSError):
    """Lake files are damaged (truncated, bits flipped ...); the message names each one,
    what is wrong and how to repair it."""

    def __init__(self, damaged: Mapping[str, str]) -> None:
        self.damaged = dict(damaged)
        listed = "; ".join(f"{where}: {problem}" for where, problem in self.damaged.items())
        advice = dict.fromkeys(repair_advice(where) for where in self.damaged)
        super().__init__(f"{len(self.damaged)} damaged file(s): {listed}. {' '.join(advice)}")


def damage_of(exc: Exception) -> str:
    """What a failed Parquet read says about the file, in one whole sentence."""
    text = str(exc)
    if "magic bytes not found" in text:
        return "not a whole Parquet file (truncated or overwritten)"
    if "CRC checksum verification failed" in text:
        return "a page failed its checksum (bits changed on disk)"
    return f"unreadable Parquet ({type(exc).__name__}: {text.split('. ')[0]})"


def read_verified(source: str | Path | pa.NativeFile, where: str) -> pa.Table:
    """A Parquet table with every page checksum verified (files written without checksums
    are read as they are); a damaged file raises :class:`DamagedFileError` naming ``where``."""
    try:
        # One file: ParquetFile, not read_table's dataset machinery (half the time per file),
        # and no thread pool (nothing to gain, and none left running at exit).
        with pq.ParquetFile(source, page_checksum_verification=True) as parquet:
            return parquet.read(use_threads=False)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise DamagedFileError({where: damage_of(exc)}) from None


def partition_dir(root: Path, area: str, symbol: str, day: dt.date) -> Path:
    """``<root>/<area>/symbol=S/year=YYYY/month=MM/day=DD``."""
    return (
        Path(root)
        / area
        / f"symbol={symbol}"
        / f"year={day.year:04d}"
        / f"month={day.month:02d}"
        / f"day={day.day:02d}"
    )


_PARTITION_TAIL = re.compile(
    r"symbol=(?P<symbol>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/"
    r"[^/]+$"
)


def partition_of(path: Path) -> tuple[str, dt.date] | None:
    """The (symbol, day) a partition or quarantine path names, or ``None`` if it names none."""
    match = _PARTITION_TAIL.search(path.as_posix())
    if match is None:
        return None
    try:
        day = dt.date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None
    return match["symbol"], day


def new_york_day_keys(table: pa.Table) -> pa.Array:
    """Each row's New York trading date as the integer YYYYMMDD."""
    local = pc.cast(table["timestamp"], pa.timestamp("ns", tz="America/New_York"))
    return pc.add(
        pc.add(pc.multiply(pc.year(local), 10_000), pc.multiply(pc.month(local), 100)),
        pc.day(local),
    )


def describe_partitions(partitions: Sequence[tuple[str, dt.date]], shown: int = 10) -> str:
    """``AAPL 2024-01-17, MSFT 2024-02-08`` (and how many more), for messages."""
    named = ", ".join(f"{symbol} {day}" for symbol, day in partitions[:shown])
    more = len(partitions) - shown
    return named + (f" and {more} more" if more > 0 else "")


def day_prefix(area: str, symbol: str, day: dt.date) -> str:
    """``<area>/symbol=S/year=YYYY/month=MM/day=DD``: the key prefix of one symbol-day."""
    return f"{area}/symbol={symbol}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def partition_key(symbol: str, day: dt.date) -> str:
    """The key, relative to the lake's root, of one symbol-day's bars."""
    return f"{day_prefix(LAKE_DIR, symbol, day)}/{PARTITION_FILE}"


def quarantine_key(symbol: str, day: dt.date) -> str:
    """The key of one symbol-day's rejected rows."""
    return f"{day_prefix(QUARANTINE_DIR, symbol, day)}/{QUARANTINE_FILE}"


def as_store(lake: LakeStore | Path | str) -> LakeStore:
    """A store for a lake given as a store, a local directory or an ``s3://`` URI."""
    if isinstance(lake, LocalStore | S3Store):
        return lake
    return open_store(str(lake) if isinstance(lake, Path) else lake)


def present_partitions(
    lake: LakeStore | Path | str,
    symbols: Sequence[str] | None,
    area: str = LAKE_DIR,
    years: Sequence[int] | None = None,
) -> set[tuple[str, dt.date]]:
    """Every (symbol, day) of ``symbols`` (``None``: of every symbol) that has a file in
    ``area``, found by listing, never by asking about each file. On S3: one paginated LIST
    of the area (one request per 1,000 keys), which planning wants; with ``years`` (a read
    of a few symbols), a LIST of each symbol-year instead, so the rest of a large lake is
    not listed."""
    store = as_store(lake)
    wanted = None if symbols is None else set(symbols)
    found = set()
    prefixes = [area] if wanted is None else [f"{area}/symbol={s}" for s in sorted(wanted)]
    if wanted is not None and years is not None:
        prefixes = [f"{prefix}/year={year:04d}" for prefix in prefixes for year in years]
    elif wanted is not None and not store.is_local and len(wanted) > 1:
        prefixes = [area]  # one paginated listing of the whole area
    for prefix in prefixes:
        for key in store.list(prefix):
            located = partition_of(Path(key))
            if (
                located is not None
                and key.endswith(f"/{_FILE_OF[area]}")
                and (wanted is None or located[0] in wanted)
            ):
                found.add(located)
    return found


def partition_path(data_dir: Path | str, symbol: str, day: dt.date) -> Path:
    """Where the bars of one symbol and New York trading day live."""
    return partition_dir(Path(data_dir), LAKE_DIR, symbol, day) / PARTITION_FILE


def quarantine_path(data_dir: Path | str, symbol: str, day: dt.date) -> Path:
    """Where rejected rows of one symbol and day are kept, with their reasons."""
    return partition_dir(Path(data_dir), QUARANTINE_DIR, symbol, day) / QUARANTINE_FILE


@dataclass(frozen=True)
class WrittenFile:
    """A published file: its key in the lake, how many rows, and the sha256 of its bytes."""

    key: str
    rows: int
    sha256: str


def parquet_bytes(table: pa.Table, metadata: Mapping[str, str]) -> bytes:
    """Serialise ``table`` with fixed writer options and ``metadata`` (no wall-clock data)."""
    schema_metadata = dict(table.schema.metadata or {})
    schema_metadata.update({key.encode(): value.encode() for key, value in metadata.items()})
    table = table.replace_schema_metadata(schema_metadata)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **WRITER_OPTIONS)
    return sink.getvalue().to_pybytes()


def without_symbol(table: pa.Table) -> pa.Table:
    """``table`` as a partition file stores it: no symbol column, the file's own schema."""
    schema = LAKE_SCHEMA
    if REASON_COLUMN in table.column_names:
        schema = schema.append(pa.field(REASON_COLUMN, pa.string(), nullable=False))
    return pa.Table.from_arrays([table[name] for name in schema.names], schema=schema)


def write_partition(path: Path, table: pa.Table, metadata: Mapping[str, str]) -> WrittenFile:
    """Publish one symbol-day's rows (or rejected rows) atomically at a local ``path``."""
    return publish_partition(LocalStore(path.parent), path.name, table, metadata)


def publish_partition(
    lake: LakeStore,
    key: str,
    table: pa.Table,
    metadata: Mapping[str, str],
    *,
    background: bool = False,
    create_only: bool = False,
) -> WrittenFile:
    """Publish one symbol-day's rows (or rejected rows) at ``key``, at once, without the
    symbol column; ``metadata`` names the symbol and day for a file read on its own.
    ``background`` lets an S3 upload overlap others (durable after ``lake.flush()``);
    ``create_only``: a new file, never over other bytes (see ``LakeStore.put``)."""
    table = without_symbol(table)
    return publish_table(lake, key, table, metadata, background=background, create_only=create_only)


def repeated_string(value: str, count: int) -> pa.Array:
    """``value`` ``count`` times as a string array, built in Arrow rather than a Python list."""
    indices = pa.array(np.zeros(count, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value])).cast(pa.string())


def lists_naming_any(lists: pa.ChunkedArray | pa.Array, values: Iterable[str]) -> np.ndarray:
    """Per row of a list-of-strings column: whether its list names any of ``values``."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    mask = np.zeros(len(lists), dtype=bool)
    wanted = sorted(set(values))
    if wanted and len(lists):
        hits = pc.filter(
            pc.list_parent_indices(lists),
            pc.is_in(pc.list_flatten(lists), pa.array(wanted, pa.string())),
        )
        mask[hits.to_numpy(zero_copy_only=False)] = True
    return mask


def read_table_at(lake: LakeStore, key: str) -> pa.Table:
    """The Parquet table at ``key``, checksums verified (a local file is read in place)."""
    where = f"{lake.uri}/{key}"
    if isinstance(lake, LocalStore):
        return read_verified(lake.path(key), where)
    return read_verified(pa.BufferReader(lake.get(key)), where)


def read_partition(path: Path, lake: LakeStore | None = None) -> pa.Table:
    """A partition file's rows with the symbol column restored from its metadata (files of
    releases that stored the column are read as they are); ``path`` is a key of ``lake``
    when one is given."""
    table = read_verified(path, str(path)) if lake is None else read_table_at(lake, path.as_posix())
    if SYMBOL_COLUMN in table.column_names:
        return table
    symbol = (table.schema.metadata or {}).get(SYMBOL_KEY.encode(), b"").decode()
    if not symbol:
        raise ValueError(f"{path} has neither a symbol column nor {SYMBOL_KEY} metadata")
    return table.add_column(
        0, OHLCV_SCHEMA.field(SYMBOL_COLUMN), repeated_string(symbol, table.num_rows)
    )


def write_table(path: Path, table: pa.Table, metadata: Mapping[str, str]) -> WrittenFile:
    """Publish ``table`` as a Parquet file at a local ``path``, atomically, deterministically."""
    return publish_table(LocalStore(path.parent), path.name, table, metadata)


def publish_table(
    lake: LakeStore,
    key: str,
    table: pa.Table,
    metadata: Mapping[str, str],
    *,
    background: bool = False,
    create_only: bool = False,
) -> WrittenFile:
    """Publish ``table`` as a Parquet object at ``key``, at once and deterministically."""
    data = parquet_bytes(table, metadata)
    if background:
        lake.put_soon(key, data, crash_point_name="parquet_write", create_only=create_only)
    else:
        lake.put(key, data, crash_point_name="parquet_write", create_only=create_only)
    return WrittenFile(key, table.num_rows, hashlib.sha256(data).hexdigest())


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


Output = Literal["arrow", "pandas", "polars"]


def as_output(table: pa.Table, output: Output) -> Any:
    """``table`` as Arrow, a pandas DataFrame or a polars DataFrame (polars is optional)."""
    if output == "pandas":
        return table.to_pandas()
    if output == "polars":
        try:
            import polars as pl  # optional: needed only for this output
        except ImportError:
            raise ImportError("output='polars' needs polars: pip install polars") from None
        return pl.from_arrow(table)
    return table
