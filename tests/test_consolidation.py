"""The consolidated read layer: month files are built by the workflow, used by every read
path where current, and never served stale (refresh, deletion, damage, partial layers)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from marketpipe.commands.verify import verify_lake
from marketpipe.lake.consolidated import consolidate
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.month_sources import MONTHLY_DIR, month_key, sources_digest
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.read_plan import plan_read
from marketpipe.lake.reader import MissingPartitionsError, bar_files, read_bars, scan_bars
from marketpipe.lake.storage import parquet_bytes, partition_path, read_verified
from marketpipe.workflow.config_loading import load_settings
from tests.workflow_support import ROOT, SYMBOLS, copy_of, lake_hashes, snakemake, write_config

pytestmark = pytest.mark.workflow

MONTHS = [(2024, 1), (2024, 2), (2024, 3)]
# Ranges that cover whole months, cut months at either end, cross month edges, or sit in one.
RANGES = [
    (dt.date(2024, 1, 2), dt.date(2024, 3, 28)),
    (dt.date(2024, 1, 1), dt.date(2024, 1, 31)),
    (dt.date(2024, 1, 15), dt.date(2024, 2, 14)),
    (dt.date(2024, 1, 31), dt.date(2024, 3, 1)),
    (dt.date(2024, 2, 5), dt.date(2024, 2, 9)),
    (dt.date(2024, 2, 1), dt.date(2024, 3, 28)),
]


def marketpipe(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "marketpipe.cli", *args, "--config", "config.yaml"]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)


def without_months(workdir: Path, tmp_path: Path) -> Path:
    """A copy of ``workdir``'s lake with no month files: every read goes to the day files."""
    lake = tmp_path / "days-only"
    shutil.copytree(workdir / "lake", lake)
    shutil.rmtree(lake / MONTHLY_DIR)
    return lake


def same_rows(scanned: pa.Table, read: pa.Table) -> bool:
    """Whether a scan (symbol last, no metadata) holds ``read``'s rows in the same order."""
    ordered = scanned.select(read.column_names).sort_by(
        [("symbol", "ascending"), ("timestamp", "ascending")]
    )
    return ordered.cast(read.schema.remove_metadata()).equals(read.replace_schema_metadata(None))


def month_keys_read(lake: Path, start: dt.date, end: dt.date) -> list[str]:
    plan = plan_read(SYMBOLS, start, end, LocalStore(lake), "error")
    return [key for key in plan.keys if key.startswith(MONTHLY_DIR)]


def test_the_workflow_builds_every_closed_month_and_records_it(reference: Path) -> None:
    lake = reference / "lake"
    hashes = lake_hashes(reference)
    assert sorted(key for key in hashes if key.startswith(MONTHLY_DIR)) == sorted(
        month_key(symbol, month) for symbol in SYMBOLS for month in MONTHS
    )
    with CheckpointStore(lake) as store:
        recorded = store.month_entries()
        entries = store.all_entries()
    for (symbol, month), entry in recorded.items():
        days = {e.day: e.sha256 for e in entries if e.symbol == symbol and e.day.month == month[1]}
        assert entry.sources_sha256 == sources_digest(days)
        assert entry.sha256 == hashes[month_key(symbol, month)]
        table = pq.read_table(lake / month_key(symbol, month))
        assert (
            table.num_rows
            == entry.rows
            == sum(e.rows for e in entries if e.symbol == symbol and e.day.month == month[1])
        )
    dry = snakemake(reference, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_every_read_path_returns_the_same_rows_with_and_without_month_files(
    reference: Path, tmp_path: Path
) -> None:
    consolidated = reference / "lake"
    days_only = without_months(reference, tmp_path)
    for start, end in RANGES:
        with_months = read_bars(SYMBOLS, start, end, data_dir=consolidated)
        assert with_months.equals(read_bars(SYMBOLS, start, end, data_dir=days_only))
        assert with_months.num_rows > 0
        for options in (
            {"session": "regular"},
            {"timeframe": "15Min"},
            {"timeframe": "1Day", "session": "regular"},
            {"adjustment": "all"},
            {"columns": ["close", "volume"]},
        ):
            assert read_bars(SYMBOLS, start, end, data_dir=consolidated, **options).equals(
                read_bars(SYMBOLS, start, end, data_dir=days_only, **options)
            ), (start, end, options)
        scanned = scan_bars(SYMBOLS, start, end, data_dir=consolidated).to_table()
        assert same_rows(scanned, with_months)
        files = bar_files(SYMBOLS, start, end, data_dir=consolidated)
        assert [f for f in files if MONTHLY_DIR in f] == [
            str(consolidated / key) for key in month_keys_read(consolidated, start, end)
        ]
        totals = pl.scan_parquet(files).select(pl.len(), pl.col("volume").sum()).collect()
        assert totals.row(0) == (with_months.num_rows, pc.sum(with_months["volume"]).as_py())
        frame = pl.scan_pyarrow_dataset(scan_bars("MSFT", start, end, data_dir=consolidated))
        assert frame.select(pl.len()).collect().item() == sum(
            1 for symbol in with_months["symbol"].to_pylist() if symbol == "MSFT"
        )
    instant = (
        dt.datetime(2024, 1, 31, 20, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 1, 15, 0, tzinfo=dt.UTC),
    )
    assert read_bars(SYMBOLS, *instant, data_dir=consolidated).equals(
        read_bars(SYMBOLS, *instant, data_dir=days_only)
    )
    # Whole months are read from their month files; cut months from day files.
    assert month_keys_read(consolidated, *RANGES[0]) == [
        month_key(symbol, month) for symbol in SYMBOLS for month in MONTHS
    ]
    assert month_keys_read(consolidated, *RANGES[2]) == []
    assert month_keys_read(consolidated, *RANGES[3]) == [
        month_key(symbol, (2024, 2)) for symbol in SYMBOLS
    ]


def test_export_is_the_same_file_with_and_without_month_files(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    arguments = ("export", "--start", "2024-01-02", "--end", "2024-03-28", "--output")
    assert marketpipe(workdir, *arguments, "with.parquet").returncode == 0
    shutil.rmtree(workdir / "lake" / MONTHLY_DIR)
    assert marketpipe(workdir, *arguments, "without.parquet").returncode == 0
    assert pq.read_table(workdir / "with.parquet").equals(
        pq.read_table(workdir / "without.parquet")
    )


def test_a_partly_consolidated_lake_reads_the_same_rows(reference: Path, tmp_path: Path) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    (lake / month_key("AAPL", (2024, 2))).unlink()
    (lake / month_key("MSFT", (2024, 1))).unlink()
    start, end = RANGES[0]
    assert read_bars(SYMBOLS, start, end, data_dir=lake).equals(
        read_bars(SYMBOLS, start, end, data_dir=reference / "lake")
    )
    assert len(month_keys_read(lake, start, end)) == 4
    # The next run rebuilds exactly the two missing month files, to the same bytes.
    dry = snakemake(workdir, "-n")
    assert "consolidate_2024_01" in dry.stdout and "consolidate_2024_02" in dry.stdout
    assert "consolidate_2024_03" not in dry.stdout and "fetch_" not in dry.stdout
    assert snakemake(workdir, "--cores", "2").returncode == 0
    assert lake_hashes(workdir) == lake_hashes(reference)


def test_a_refreshed_day_never_leaves_its_month_file_stale(reference: Path, tmp_path: Path) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    day = dt.date(2024, 2, 9)
    before = lake_hashes(workdir)
    write_config(workdir, demo={"corrections": {"MSFT": [day]}})
    refreshed = marketpipe(workdir, "refresh", "--start", "2024-02-09", "--symbols", "MSFT")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "1 partition(s) replaced" in refreshed.stdout
    assert not (lake / month_key("MSFT", (2024, 2))).exists()  # removed before the day changed
    days_only = without_months(workdir, tmp_path)
    february = (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    corrected = read_bars("MSFT", *february, data_dir=lake)
    assert corrected.equals(read_bars("MSFT", *february, data_dir=days_only))
    assert not corrected.equals(read_bars("MSFT", *february, data_dir=reference / "lake"))
    # The next run rebuilds just that month file, from the corrected day.
    dry = snakemake(workdir, "-n")
    assert "consolidate_2024_02" in dry.stdout and "fetch_" not in dry.stdout
    assert snakemake(workdir, "--cores", "2").returncode == 0
    after = lake_hashes(workdir)
    changed = sorted(key for key in after if after[key] != before.get(key))
    assert changed == [
        "ohlcv/symbol=MSFT/year=2024/month=02/day=09/bars.parquet",
        month_key("MSFT", (2024, 2)),
    ]
    assert read_bars("MSFT", *february, data_dir=lake).equals(corrected)
    assert month_keys_read(lake, *february) == [month_key(s, (2024, 2)) for s in SYMBOLS]
    assert verify_lake(load_settings(_config(workdir))).problems == []


def _config(workdir: Path) -> dict[str, object]:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["data_dir"] = str(workdir / "lake")
    return config


def test_a_day_file_changed_behind_the_lakes_back_bypasses_its_month(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    january = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    day = partition_path(lake, "AAPL", dt.date(2024, 1, 10))
    table = pq.read_table(day)
    pq.write_table(table.slice(0, 100), day)  # other rows, another size: not the month's source
    days_only = without_months(workdir, tmp_path)
    assert read_bars("AAPL", *january, data_dir=lake).equals(
        read_bars("AAPL", *january, data_dir=days_only)
    )
    assert month_keys_read(lake, *january) == [month_key("MSFT", (2024, 1))]
    day.unlink()
    partition_path(days_only, "AAPL", dt.date(2024, 1, 10)).unlink()
    with pytest.raises(MissingPartitionsError, match="AAPL 2024-01-10"):
        read_bars("AAPL", *january, data_dir=lake)
    skipped = read_bars("AAPL", *january, data_dir=lake, missing="skip")
    assert skipped.equals(read_bars("AAPL", *january, data_dir=days_only, missing="skip"))
    problems = verify_lake(load_settings(_config(workdir))).problems
    assert [p.problem for p in problems if "AAPL/year=2024/month=01" in p.path] == [
        "recorded in the ledger but the file is missing"
    ]
    # The next run fetches the day again and rebuilds its month after it, to the same bytes.
    dry = snakemake(workdir, "-n")
    assert "fetch_2024_01" in dry.stdout and "consolidate_2024_01" in dry.stdout
    assert snakemake(workdir, "--cores", "2").returncode == 0
    assert lake_hashes(workdir) == lake_hashes(reference)


def test_a_damaged_month_file_is_never_served(reference: Path, tmp_path: Path) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    month = lake / month_key("AAPL", (2024, 3))
    data = bytearray(month.read_bytes())
    data[200] ^= 0xFF  # a flipped bit inside the first data page
    month.write_bytes(bytes(data))
    march = (dt.date(2024, 3, 1), dt.date(2024, 3, 28))
    assert read_bars(SYMBOLS, *march, data_dir=lake).equals(
        read_bars(SYMBOLS, *march, data_dir=reference / "lake")
    )
    result = marketpipe(workdir, "verify")
    assert result.returncode == 1 and "month=03/bars.parquet" in result.stdout
    rebuilt = marketpipe(workdir, "consolidate")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "1 month file(s) built, 5 already current" in rebuilt.stdout
    assert lake_hashes(workdir) == lake_hashes(reference)
    assert marketpipe(workdir, "verify").returncode == 0


def test_consolidate_builds_a_lake_written_without_the_layer(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    shutil.rmtree(lake / MONTHLY_DIR)
    with CheckpointStore(lake) as store:
        store.forget_months("AAPL", MONTHS)
        store.forget_months("MSFT", MONTHS)
    write_config(workdir, consolidate=False)
    dry = snakemake(workdir, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr  # switched off: nothing planned
    result = marketpipe(workdir, "consolidate")
    assert result.returncode == 0, result.stderr
    assert "6 month file(s) built, 0 already current" in result.stdout
    assert lake_hashes(workdir) == lake_hashes(reference)
    again = marketpipe(workdir, "consolidate", "--symbols", "AAPL")
    assert "0 month file(s) built, 3 already current" in again.stdout


def test_a_month_is_built_only_once_every_session_is_in_the_lake(tmp_path: Path) -> None:
    write_config(tmp_path, end=dt.date(2024, 2, 15))
    assert snakemake(tmp_path, "--cores", "2").returncode == 0
    months = sorted((tmp_path / "lake" / MONTHLY_DIR).rglob("*.parquet"))
    assert [path.relative_to(tmp_path / "lake").as_posix() for path in months] == [
        month_key(symbol, (2024, 1)) for symbol in SYMBOLS
    ]
    table = pa.concat_tables(pq.read_table(path) for path in months)
    january = read_bars(SYMBOLS, "2024-01-02", "2024-01-31", data_dir=tmp_path / "lake")
    assert table.num_rows == january.num_rows


def _same_size_rewrite(path: Path) -> tuple[dt.datetime, float]:
    """Rewrite a day file with one close changed by a few cents and the file's size kept;
    return that bar's time and its new close."""
    original = path.read_bytes()
    table = read_verified(path, str(path))
    closes = table["close"].to_pylist()
    index = table.schema.get_field_index("close")
    for row in range(100, len(closes)):
        for cents in (1, -1, 2, -2, 3, -3):
            changed = list(closes)
            changed[row] = round(changed[row] + cents / 100, 2)
            edited = table.set_column(index, table.schema.field(index), [changed])
            data = parquet_bytes(edited, {})
            if len(data) == len(original):
                path.write_bytes(data)
                return table["timestamp"][row].as_py(), changed[row]
    raise AssertionError("no same-size rewrite found")


def test_a_day_file_rewritten_to_the_same_size_is_never_read_from_its_stale_month(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    january = (dt.date(2024, 1, 2), dt.date(2024, 1, 31))
    assert month_key("AAPL", (2024, 1)) in month_keys_read(lake, *january)  # a copy keeps it
    size = partition_path(lake, "AAPL", dt.date(2024, 1, 10)).stat().st_size
    stamp, close = _same_size_rewrite(partition_path(lake, "AAPL", dt.date(2024, 1, 10)))
    assert partition_path(lake, "AAPL", dt.date(2024, 1, 10)).stat().st_size == size
    read = read_bars("AAPL", *january, data_dir=lake)
    row = read.filter(pc.equal(read["timestamp"], stamp)).to_pylist()[0]
    assert row["close"] == close  # the day's new value, not the month file's old one
    assert month_keys_read(lake, *january) == [month_key("MSFT", (2024, 1))]
    assert read.equals(read_bars("AAPL", *january, data_dir=without_months(workdir, tmp_path)))
    # consolidate does not count the month current either: it refuses to rebuild it from a
    # day file the ledger does not know, and removes it.
    report = consolidate(LocalStore(lake), CheckpointStore(lake), ["AAPL"], [(2024, 1)])
    assert report.current == 0 and not (lake / month_key("AAPL", (2024, 1))).exists()


def test_update_repairs_a_damaged_month_file(reference: Path, tmp_path: Path) -> None:
    workdir = copy_of(reference, tmp_path)
    month = workdir / "lake" / month_key("AAPL", (2024, 3))
    data = bytearray(month.read_bytes())
    data[200] ^= 0xFF  # a flipped bit inside the first data page
    month.write_bytes(bytes(data))
    status = marketpipe(workdir, "status")
    assert "AAPL 2024-03 (month file)" in status.stdout, status.stdout + status.stderr
    update = marketpipe(workdir, "update", "--workflow", str(ROOT))
    assert update.returncode == 0, update.stdout + update.stderr
    assert "AAPL 2024-03 (month file)" in update.stdout + update.stderr
    assert lake_hashes(workdir) == lake_hashes(reference)
    assert marketpipe(workdir, "verify").returncode == 0
    kept = sorted((workdir / "lake" / "_damaged").rglob("bars.parquet"))
    assert [path.read_bytes() for path in kept] == [bytes(data)]  # kept aside, not lost


def test_update_repairs_damaged_news_and_corporate_actions_files(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    lake = workdir / "lake"
    news = sorted((lake / "news").rglob("*.parquet"))[3]
    actions = lake / "corporate_actions" / "symbol=AAPL" / "actions.parquet"
    for path in (news, actions):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    assert marketpipe(workdir, "verify").returncode == 1
    update = marketpipe(workdir, "update", "--workflow", str(ROOT))
    assert update.returncode == 0, update.stdout + update.stderr
    assert "AAPL corporate actions" in update.stderr and "news 20" in update.stderr
    assert marketpipe(workdir, "verify").returncode == 0
    assert news.read_bytes() == (reference / news.relative_to(workdir)).read_bytes()
    assert actions.read_bytes() == (reference / actions.relative_to(workdir)).read_bytes()
