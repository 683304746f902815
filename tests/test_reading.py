"""Reading the lake: every common reader works with no extra arguments; old lakes migrate."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from marketpipe.commands.migrate import migrate_lake
from marketpipe.commands.verify import verify_lake
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import (
    LAKE_DIR,
    PARTITION_FILE,
    QUARANTINE_DIR,
    partition_of,
    read_partition,
    write_table,
)
from marketpipe.workflow.settings import load_settings
from tests.workflow_support import lake_hashes, snakemake

pytestmark = pytest.mark.workflow

COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


def canonical(table: pa.Table) -> pa.Table:
    """The rows as plain Arrow: string symbols, UTC nanosecond stamps, sorted."""
    columns = {
        "symbol": pc.cast(table["symbol"], pa.string()),
        "timestamp": pc.cast(table["timestamp"], pa.timestamp("ns", tz="UTC")),
        **{name: pc.cast(table[name], pa.float64()) for name in COLUMNS[2:7]},
        "trade_count": pc.cast(table["trade_count"], pa.int64()),
        "vwap": pc.cast(table["vwap"], pa.float64()),
    }
    plain = pa.table(columns)
    return plain.sort_by([("symbol", "ascending"), ("timestamp", "ascending")])


def test_every_common_reader_returns_every_row_with_the_same_values(reference: Path) -> None:
    lake = reference / "lake" / LAKE_DIR
    with CheckpointStore(reference / "lake") as store:
        rows = sum(entry.rows for entry in store.all_entries())
    readers = {
        "pyarrow.dataset": lambda: ds.dataset(lake, partitioning="hive").to_table(),
        "pq.read_table": lambda: pq.read_table(lake),
        "pandas": lambda: pa.Table.from_pandas(pd.read_parquet(lake), preserve_index=False),
        "polars": lambda: (
            pl.scan_parquet(f"{lake}/**/*.parquet", hive_partitioning=True).collect().to_arrow()
        ),
        "duckdb": lambda: duckdb.sql(
            f"SELECT * FROM read_parquet('{lake}/*/*/*/*/*.parquet', hive_partitioning=true)"
        ).to_arrow_table(),
    }
    tables = {name: canonical(read()) for name, read in readers.items()}
    expected = tables.pop("pyarrow.dataset")
    assert expected.num_rows == rows > 100_000
    for name, table in tables.items():
        assert table.equals(expected), f"{name} differs"


def test_a_file_read_on_its_own_says_which_symbol_and_day_it_holds(reference: Path) -> None:
    path = next((reference / "lake" / LAKE_DIR).rglob(PARTITION_FILE))
    symbol, day = partition_of(path)  # type: ignore[misc]
    metadata = pq.read_schema(path).metadata
    assert metadata[b"marketpipe.symbol"] == symbol.encode()
    assert metadata[b"marketpipe.day"] == day.isoformat().encode()
    table = read_partition(path)
    assert table.column_names == COLUMNS and set(table["symbol"].to_pylist()) == {symbol}


def _as_an_earlier_release_wrote_it(data_dir: Path) -> None:
    """Rewrite every file with the symbol column inside, as releases before this one did, and
    record those files in the ledger as they would have been."""
    with CheckpointStore(data_dir) as store:
        for area in (LAKE_DIR, QUARANTINE_DIR):
            for path in (data_dir / area).rglob("*.parquet"):
                table = read_partition(path)
                metadata = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
                written = write_table(path, table.replace_schema_metadata(None), metadata)
                if area == LAKE_DIR:
                    symbol, day = partition_of(path)  # type: ignore[misc]
                    entry = store.ledger(symbol, [day])[day]
                    store.publish(type(entry)(**{**entry.__dict__, "sha256": written.sha256}))


def test_a_lake_of_the_earlier_format_is_migrated_to_the_same_bytes(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "old"
    shutil.copytree(reference, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    lake = workdir / "lake"
    _as_an_earlier_release_wrote_it(lake)
    assert lake_hashes(workdir) != lake_hashes(reference)
    monkeypatch.chdir(workdir)
    settings = load_settings(yaml.safe_load((workdir / "config.yaml").read_text()))
    problems = verify_lake(settings).problems
    assert problems and all("written by an earlier release" in p.problem for p in problems)
    with pytest.raises(Exception, match="Unable to merge"):
        pd.read_parquet(lake / LAKE_DIR)
    result = migrate_lake(settings)
    assert result.partitions == len(lake_hashes(reference)) and result.current == 0
    assert lake_hashes(workdir) == lake_hashes(reference)
    assert verify_lake(settings).problems == []
    with CheckpointStore(lake) as store:
        assert len(store.replacements()) == result.partitions  # the ledger keeps the history
    assert canonical(pq.read_table(lake / LAKE_DIR)).equals(
        canonical(ds.dataset(reference / "lake" / LAKE_DIR, partitioning="hive").to_table())
    )
    assert migrate_lake(settings).partitions == 0, "a second migration finds nothing to do"
    dry = snakemake(workdir, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
