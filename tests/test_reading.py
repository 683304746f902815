"""Reading the lake: every common reader works with no extra arguments; old lakes migrate."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from marketpipe.cli import main as cli_main
from marketpipe.commands.migrate import migrate_lake
from marketpipe.commands.verify import verify_lake
from marketpipe.ingest.bars import ingest_days
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import MONTHLY_DIR
from marketpipe.lake.reader import MissingPartitionsError, read_bars
from marketpipe.lake.storage import (
    LAKE_DIR,
    PARTITION_FILE,
    QUARANTINE_DIR,
    partition_of,
    partition_path,
    read_partition,
    write_table,
)
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.jobs import stream_settings
from marketpipe.workflow.vendors import open_client
from tests.chaos_trials import bar_files
from tests.readers import COLUMNS, assert_every_reader_agrees, canonical
from tests.workflow_support import SYMBOLS, lake_hashes, snakemake

pytestmark = pytest.mark.workflow


def test_every_common_reader_returns_every_row_with_the_same_values(reference: Path) -> None:
    assert assert_every_reader_agrees(reference / "lake") > 100_000


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
    record those files in the ledger as they would have been (no month files then)."""
    shutil.rmtree(data_dir / MONTHLY_DIR)
    with CheckpointStore(data_dir) as store:
        for symbol, month in list(store.month_entries()):
            store.forget_months(symbol, [month])
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
    assert result.partitions == len(bar_files(lake_hashes(reference))) and result.current == 0
    assert bar_files(lake_hashes(workdir)) == bar_files(lake_hashes(reference))
    assert verify_lake(settings).problems == []
    with CheckpointStore(lake) as store:
        assert len(store.replacements()) == result.partitions  # the ledger keeps the history
    assert canonical(pq.read_table(lake / LAKE_DIR)).equals(
        canonical(ds.dataset(reference / "lake" / LAKE_DIR, partitioning="hive").to_table())
    )
    assert migrate_lake(settings).partitions == 0, "a second migration finds nothing to do"
    # The next run fetches nothing and builds the month files that release did not write.
    dry = snakemake(workdir, "-n")
    assert "fetch_" not in dry.stdout and "consolidate_2024_03" in dry.stdout
    assert snakemake(workdir, "--cores", "2").returncode == 0
    assert lake_hashes(workdir) == lake_hashes(reference)


def test_read_bars_returns_exactly_the_ledgers_rows_across_a_month_and_a_dst_change(
    reference: Path,
) -> None:
    data_dir = reference / "lake"
    first, last = dt.date(2024, 2, 26), dt.date(2024, 3, 15)  # Feb -> Mar, DST on 03-10
    days = [s.date for s in trading_sessions(first, last)]
    table = read_bars(SYMBOLS, first, last, data_dir=data_dir)
    with CheckpointStore(data_dir) as store:
        ledger_rows = sum(store.ledger(s)[d].rows for s in SYMBOLS for d in days)
    assert table.num_rows == ledger_rows
    assert table.column_names == COLUMNS
    files = pa.concat_tables(
        read_partition(partition_path(data_dir, s, d)) for s in SYMBOLS for d in days
    )
    assert canonical(table).equals(canonical(files))
    # 19:00-20:00 New York in winter is the next UTC day: those bars stay with their session.
    stamps = table["timestamp"]
    utc_day = pc.cast(pc.floor_temporal(stamps, unit="day"), pa.date32())
    new_york_day = pc.cast(
        pc.floor_temporal(pc.cast(stamps, pa.timestamp("ns", tz="America/New_York")), unit="day"),
        pa.date32(),
    )
    assert pc.sum(pc.not_equal(utc_day, new_york_day)).as_py() > 0
    assert set(pc.unique(new_york_day).to_pylist()) == set(days)


def test_read_bars_as_pandas_matches_alpaca_py_dataframes(reference: Path) -> None:
    frame = read_bars(
        ["MSFT", "AAPL"],
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
        data_dir=reference / "lake",
        output="pandas",
    )
    assert list(frame.index.names) == ["symbol", "timestamp"]
    assert str(frame.index.dtypes["timestamp"]) == "datetime64[ns, UTC]"
    assert frame.index.get_level_values("symbol").map(type).unique().tolist() == [str]
    assert list(frame.columns) == COLUMNS[2:]
    assert frame.index.is_monotonic_increasing
    polars_frame = read_bars(
        "AAPL",
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 3),
        data_dir=reference / "lake",
        output="polars",
    )
    assert polars_frame.height == len(frame.loc["AAPL"])


def test_read_bars_reports_missing_partitions_and_rejects_naive_datetimes(
    reference: Path,
) -> None:
    data_dir = reference / "lake"
    with pytest.raises(
        MissingPartitionsError,
        match=r"1 partition\(s\) are not in the lake: "
        r"AAPL 2024-04-01",
    ):
        read_bars("AAPL", dt.date(2024, 3, 28), dt.date(2024, 4, 1), data_dir=data_dir)
    some = read_bars(
        "AAPL", dt.date(2024, 3, 28), dt.date(2024, 4, 1), data_dir=data_dir, missing="skip"
    )
    assert (
        some.num_rows
        == read_bars("AAPL", dt.date(2024, 3, 28), dt.date(2024, 3, 28), data_dir=data_dir).num_rows
    )
    with pytest.raises(ValueError, match="has no timezone"):
        read_bars("AAPL", dt.datetime(2024, 1, 2, 10), dt.date(2024, 1, 3), data_dir=data_dir)
    start = dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC)
    end = dt.datetime(2024, 1, 2, 15, 9, tzinfo=dt.UTC)
    window = read_bars("AAPL", start, end, data_dir=data_dir)
    assert window["timestamp"][0].as_py() >= start and window["timestamp"][-1].as_py() <= end
    assert 1 <= window.num_rows <= 10


def test_regular_hours_and_session_aligned_resampling(reference: Path) -> None:
    data_dir, day = reference / "lake", dt.date(2024, 1, 2)
    minutes = read_bars("AAPL", day, day, data_dir=data_dir)
    regular = read_bars("AAPL", day, day, data_dir=data_dir, session="regular")
    opening = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)
    closing = dt.datetime(2024, 1, 2, 21, 0, tzinfo=dt.UTC)
    assert regular["timestamp"][0].as_py() >= opening
    assert regular["timestamp"][-1].as_py() < closing < minutes["timestamp"][-1].as_py()
    hourly = read_bars("AAPL", day, day, data_dir=data_dir, session="regular", timeframe="1Hour")
    starts = [t.astimezone(NEW_YORK).strftime("%H:%M") for t in hourly["timestamp"].to_pylist()]
    assert starts == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]
    first_hour = regular.filter(
        pc.less(regular["timestamp"], pa.scalar(opening + dt.timedelta(hours=1)))
    )
    assert hourly["open"][0].as_py() == first_hour["open"][0].as_py()
    assert hourly["close"][0].as_py() == first_hour["close"][-1].as_py()
    assert hourly["high"][0].as_py() == pc.max(first_hour["high"]).as_py()
    assert hourly["volume"][0].as_py() == pc.sum(first_hour["volume"]).as_py()
    (daily,) = read_bars("AAPL", day, day, data_dir=data_dir, timeframe="1Day").to_pylist()
    assert daily["timestamp"] == dt.datetime(2024, 1, 2, 5, 0, tzinfo=dt.UTC)
    assert daily["volume"] == pc.sum(minutes["volume"]).as_py()
    assert daily["low"] == pc.min(minutes["low"]).as_py()


def test_regular_hours_end_at_an_early_close(tmp_path: Path) -> None:
    friday = dt.date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00
    settings = load_settings(
        {"symbols": ["AAPL"], "start": friday, "end": friday, "data_dir": str(tmp_path)}
    )
    with CheckpointStore(tmp_path) as store, open_client(settings) as client:
        ingest_days(client, store, tmp_path, ["AAPL"], [friday], stream_settings(settings))
    extended = read_bars("AAPL", friday, friday, data_dir=tmp_path)
    regular = read_bars("AAPL", friday, friday, data_dir=tmp_path, session="regular")
    local = [t.astimezone(NEW_YORK).time() for t in regular["timestamp"].to_pylist()]
    assert local[0] == dt.time(9, 30) and local[-1] == dt.time(12, 59)
    assert extended["timestamp"][-1].as_py().astimezone(NEW_YORK).time() > dt.time(13, 0)


def test_export_writes_one_parquet_or_csv_file_of_a_range(
    reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(reference)
    first, last = dt.date(2024, 1, 30), dt.date(2024, 2, 2)
    expected = read_bars(SYMBOLS, first, last, data_dir=reference / "lake")
    for suffix in ("parquet", "csv"):
        output = tmp_path / f"bars.{suffix}"
        args = [
            "export",
            "--config",
            "config.yaml",
            "--start",
            str(first),
            "--end",
            str(last),
            "--output",
            str(output),
        ]
        assert cli_main(args) == 0
        written = pq.read_table(output) if suffix == "parquet" else pa_csv.read_csv(output)
        assert canonical(written).equals(canonical(expected))
    assert f"wrote {expected.num_rows:,} bar(s) of 2 symbol(s)" in capsys.readouterr().out
    missing = [
        "export",
        "--config",
        "config.yaml",
        "--start",
        "2024-03-28",
        "--end",
        "2024-04-01",
        "--output",
        str(tmp_path / "x.csv"),
    ]
    assert cli_main(missing) == 1
    assert "AAPL 2024-04-01" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_a_wide_read_has_a_column_per_field_and_symbol_for_vectorbt(reference: Path) -> None:
    day = dt.date(2024, 2, 5)
    long = read_bars(SYMBOLS, day, day, data_dir=reference / "lake")
    wide = read_bars(SYMBOLS, day, day, data_dir=reference / "lake", output="wide")
    closes = wide["close"]
    assert list(closes.columns) == SYMBOLS and str(closes.index.dtype) == "datetime64[ns, UTC]"
    for bar in long.to_pylist():
        assert closes.at[bar["timestamp"], bar["symbol"]] == bar["close"]
        assert wide["volume"].at[bar["timestamp"], bar["symbol"]] == bar["volume"]
    # A minute without a bar of one symbol is NaN there, never filled in.
    assert int(closes.notna().sum().sum()) == long.num_rows
    assert closes.index.is_monotonic_increasing and closes.index.is_unique
