"""Corporate actions in the lake: one Parquet file per symbol beside the bars.

``<data_dir>/corporate_actions/symbol=AAPL/actions.parquet`` holds every action the vendor
returned for AAPL (splits, dividends, spin-offs, name changes, kinds MarketPipe does not
know ...), one row per action id, sorted by ex-date, type and id. Like a bar partition, the
file leaves the symbol to its path (and ``marketpipe.symbol`` metadata), so pandas, polars
and DuckDB read the directory as a table. ``reference_close`` is filled for cash dividends:
the raw close a dividend's adjustment factor is computed from (see
:mod:`marketpipe.lake.adjustment`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from marketpipe.connectors.models import CORPORATE_ACTIONS_SCHEMA
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import (
    SYMBOL_COLUMN,
    SYMBOL_KEY,
    WrittenFile,
    as_store,
    parquet_bytes,
    read_table_at,
    repeated_string,
)

ACTIONS_DIR = "corporate_actions"
ACTIONS_FILE = "actions.parquet"
REFERENCE_CLOSE = "reference_close"
# The stored row: the canonical action without its symbol, plus the dividend's reference.
STORED_ACTIONS_SCHEMA = CORPORATE_ACTIONS_SCHEMA.remove(
    CORPORATE_ACTIONS_SCHEMA.get_field_index(SYMBOL_COLUMN)
).append(pa.field(REFERENCE_CLOSE, pa.float64()))
# The stored row with its symbol, as read back.
ACTIONS_SCHEMA = CORPORATE_ACTIONS_SCHEMA.append(pa.field(REFERENCE_CLOSE, pa.float64()))
_ORDER = [("ex_date", "ascending"), ("type", "ascending"), ("id", "ascending")]


Lake = LakeStore | Path | str


def actions_key(symbol: str) -> str:
    """The key, relative to the lake's root, of ``symbol``'s corporate actions."""
    return f"{ACTIONS_DIR}/symbol={symbol}/{ACTIONS_FILE}"


def actions_path(data_dir: Path | str, symbol: str) -> Path:
    """Where the corporate actions of ``symbol`` live in a local lake."""
    return Path(data_dir) / actions_key(symbol)


def stored_symbols(lake: Lake) -> list[str]:
    """The symbols that have a corporate-actions file, sorted."""
    return sorted(
        key.split("/")[1].removeprefix("symbol=")
        for key in as_store(lake).list(ACTIONS_DIR)
        if key.endswith(f"/{ACTIONS_FILE}") and key.count("/") == 2
    )


def with_reference_close(table: pa.Table) -> pa.Table:
    """Canonical action rows (:data:`CORPORATE_ACTIONS_SCHEMA`) with an empty
    ``reference_close`` column, as :data:`ACTIONS_SCHEMA`."""
    return table.append_column(
        ACTIONS_SCHEMA.field(REFERENCE_CLOSE), pa.nulls(table.num_rows, pa.float64())
    )


def read_actions(lake: Lake, symbol: str) -> pa.Table | None:
    """The stored actions of ``symbol`` with their symbol column, or ``None`` if the lake has
    never stored any (an empty table means: asked, and there were none)."""
    store = as_store(lake)
    try:
        table = read_table_at(store, actions_key(symbol))
    except FileNotFoundError:
        return None
    return _with_symbol(table, symbol)


def read_recorded_actions(lake: Lake, symbol: str, sha256: str) -> pa.Table | None:
    """Like :func:`read_actions`, from one read of the file, but only if its bytes are the
    ones the ledger recorded (``sha256``); ``None`` when the file is absent or differs."""
    try:
        data = as_store(lake).get(actions_key(symbol))
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    return _with_symbol(pq.read_table(pa.BufferReader(data)), symbol)


def _with_symbol(table: pa.Table, symbol: str) -> pa.Table:
    """A stored file's rows as :data:`ACTIONS_SCHEMA`, the symbol restored from the path."""
    table = table.cast(STORED_ACTIONS_SCHEMA.with_metadata(table.schema.metadata))
    return table.add_column(
        ACTIONS_SCHEMA.get_field_index(SYMBOL_COLUMN),
        ACTIONS_SCHEMA.field(SYMBOL_COLUMN),
        repeated_string(symbol, table.num_rows),
    ).cast(ACTIONS_SCHEMA)


class MissingActionsError(LookupError):
    """Adjusted reads need corporate actions the lake has not stored; the message says how."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        super().__init__(
            f"no corporate actions are stored for {', '.join(symbols)}, so their bars cannot be "
            "adjusted; every workflow run stores them (snakemake or marketpipe update, with "
            "corporate_actions.fetch: true), or read raw bars (adjustment='raw')"
        )


def actions_of(lake: Lake, symbols: list[str]) -> dict[str, pa.Table]:
    """Each symbol's stored actions; raises :class:`MissingActionsError` naming any symbol
    the lake has never stored actions for."""
    store = as_store(lake)
    found = {symbol: read_actions(store, symbol) for symbol in symbols}
    missing = [symbol for symbol, table in found.items() if table is None]
    if missing:
        raise MissingActionsError(missing)
    return {symbol: table for symbol, table in found.items() if table is not None}


def merge_actions(
    stored: pa.Table | None, fresh: pa.Table, first: dt.date, last: dt.date
) -> pa.Table:
    """The actions after re-reading the ``process_date`` window ``[first, last]``.

    The window's stored rows are replaced by the vendor's answer (it may have corrected a
    ratio, or withdrawn a record), rows outside it are kept, and one row remains per id,
    the fresh one. A reference close already known for the same ex-date is kept.
    """
    fresh = fresh.cast(ACTIONS_SCHEMA)
    if stored is None or stored.num_rows == 0:
        return _unique_sorted(fresh)
    dates = stored["process_date"]
    outside = pc.or_(
        pc.less(dates, pa.scalar(first, pa.date32())),
        pc.greater(dates, pa.scalar(last, pa.date32())),
    )
    kept = stored.filter(pc.and_(outside, pc.invert(pc.is_in(stored["id"], fresh["id"]))))
    known = {
        (row["ex_date"], row["type"]): row[REFERENCE_CLOSE]
        for row in stored.select(["ex_date", "type", REFERENCE_CLOSE]).to_pylist()
        if row[REFERENCE_CLOSE] is not None
    }
    closes = [
        close if close is not None else known.get((ex_date, kind))
        for ex_date, kind, close in zip(
            fresh["ex_date"].to_pylist(),
            fresh["type"].to_pylist(),
            fresh[REFERENCE_CLOSE].to_pylist(),
            strict=True,
        )
    ]
    fresh = fresh.set_column(
        ACTIONS_SCHEMA.get_field_index(REFERENCE_CLOSE),
        ACTIONS_SCHEMA.field(REFERENCE_CLOSE),
        pa.array(closes, pa.float64()),
    )
    return _unique_sorted(pa.concat_tables([kept, fresh]))


def _unique_sorted(table: pa.Table) -> pa.Table:
    """One row per id (the last one given wins), in the stored order."""
    last_of_id = {action_id: index for index, action_id in enumerate(table["id"].to_pylist())}
    unique = table.take(pa.array(sorted(last_of_id.values()), pa.int64()))
    return unique.sort_by(_ORDER)


def actions_bytes(symbol: str, table: pa.Table) -> bytes:
    """The file bytes of ``symbol``'s actions: the same rows always give the same bytes."""
    rows = table.cast(ACTIONS_SCHEMA).sort_by(_ORDER)
    stored = pa.Table.from_arrays(
        [rows[name] for name in STORED_ACTIONS_SCHEMA.names], schema=STORED_ACTIONS_SCHEMA
    )
    return parquet_bytes(stored, {SYMBOL_KEY: symbol})


def publish_actions(
    lake: Lake, symbol: str, table: pa.Table, current_sha256: str | None = None
) -> tuple[WrittenFile, bool]:
    """Publish ``symbol``'s actions atomically unless the file already holds these bytes;
    ``current_sha256`` is the hash of the file known to be there (e.g. checked by
    :func:`read_recorded_actions`), ``None`` if unknown. Returns the file and whether it
    changed."""
    store = as_store(lake)
    data = actions_bytes(symbol, table)
    key = actions_key(symbol)
    written = WrittenFile(key, table.num_rows, hashlib.sha256(data).hexdigest())
    if written.sha256 == current_sha256:
        return written, False
    store.put(key, data, crash_point_name="parquet_write")
    return written, True
