"""Partition paths, deterministic atomic Parquet writes and vectorised bar validation."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketpipe.connectors import OHLCV_SCHEMA
from marketpipe.foundation import files
from marketpipe.foundation.files import remove_dead_temporaries, write_atomically
from marketpipe.lake.objects import LocalStore
from marketpipe.lake.storage import file_sha256, partition_path, write_table
from marketpipe.lake.validation import validate_bars
from marketpipe.markettime.calendar import trading_sessions
from marketpipe.markettime.timeframe import Timeframe

SESSION = trading_sessions(dt.date(2024, 1, 2), dt.date(2024, 1, 2))[0]
ONE_MINUTE = Timeframe.parse("1Min")
OUTSIDE = "outside the session window"


def _bar(minute: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "symbol": "AAPL",
        "timestamp": dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC) + dt.timedelta(minutes=minute),
        "open": 10.0,
        "high": 11.0,
        "low": 9.5,
        "close": 10.5,
        "volume": 100.0,
        "trade_count": 3,
        "vwap": 10.2,
    }
    row.update(changes)
    return row


def _table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OHLCV_SCHEMA)


def test_partition_path_is_hive_style_by_new_york_day(tmp_path: Path) -> None:
    assert partition_path(tmp_path, "BRK.B", dt.date(2024, 3, 5)) == (
        tmp_path / "ohlcv" / "symbol=BRK.B" / "year=2024" / "month=03" / "day=05" / "bars.parquet"
    )


def test_same_rows_give_byte_identical_files_with_provenance(tmp_path: Path) -> None:
    table = _table([_bar(0), _bar(1)])
    first = write_table(tmp_path / "a.parquet", table, {"marketpipe.feed": "sip"})
    second = write_table(tmp_path / "b.parquet", table, {"marketpipe.feed": "sip"})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert first.sha256 == second.sha256 == file_sha256(tmp_path / "a.parquet")
    metadata = pq.read_schema(tmp_path / "a.parquet").metadata
    assert metadata[b"marketpipe.feed"] == b"sip"
    assert metadata[b"marketpipe.dataset"] == b"ohlcv"
    empty = write_table(tmp_path / "empty.parquet", OHLCV_SCHEMA.empty_table(), {})
    assert empty.rows == 0
    assert pq.read_table(tmp_path / "empty.parquet").schema.equals(OHLCV_SCHEMA)


def test_atomic_write_leaves_no_partial_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "day=02" / "bars.parquet"
    write_atomically(target, b"old")
    seen: list[bytes] = []

    def failing_replace(source: str, destination: str) -> None:
        seen.append(Path(source).read_bytes())
        raise OSError("disk full")

    monkeypatch.setattr("marketpipe.foundation.files.os.replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")
    assert seen == [b"new"], "the new bytes were complete in the temporary file"
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["bars.parquet"]


def test_valid_bars_pass_untouched() -> None:
    table = _table([_bar(0), _bar(1), _bar(2)])
    result = validate_bars(table, SESSION, "sip", ONE_MINUTE)
    assert result.valid.equals(table)
    assert result.rejected.num_rows == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"high": 9.0}, "high below low"),
        ({"open": float("nan")}, "open not a positive number"),
        ({"close": float("inf"), "high": float("inf")}, "high not a positive number"),
        ({"volume": float("inf")}, "negative volume"),
        ({"close": -1.0, "low": -2.0}, "low not a positive number"),
        ({"open": None}, "missing value"),
        ({"volume": -5.0}, "negative volume"),
        ({"timestamp": dt.datetime(2024, 1, 2, 14, 31, 30, tzinfo=dt.UTC)}, "off grid"),
        ({"timestamp": dt.datetime(2024, 1, 2, 8, 59, tzinfo=dt.UTC)}, OUTSIDE),
        ({"timestamp": dt.datetime(2024, 1, 3, 1, 0, tzinfo=dt.UTC)}, OUTSIDE),
    ],
)
def test_each_bad_row_is_rejected_with_its_reason(change: dict[str, object], reason: str) -> None:
    table = _table([_bar(0), _bar(5, **change), _bar(6)])
    result = validate_bars(table, SESSION, "sip", ONE_MINUTE)
    assert result.valid.num_rows == 2
    assert result.rejected.column("reason").to_pylist() == [reason]


def test_open_or_close_outside_low_high_is_kept_and_flagged() -> None:
    # Real Alpaca bars do this: open and close use stricter trade filters than high and low.
    real = [_bar(1, high=10.2), _bar(2, low=10.4), _bar(3, open=11.5), _bar(4, close=9.0)]
    table = _table([_bar(0), *real, _bar(5, high=9.0), _bar(6)])
    result = validate_bars(table, SESSION, "sip", ONE_MINUTE)
    assert result.valid.num_rows == 6
    assert result.flagged == 4
    assert result.rejected.column("reason").to_pylist() == ["high below low"]
    assert validate_bars(_table([_bar(0), _bar(1)]), SESSION, "sip", ONE_MINUTE).flagged == 0
    # Without a bad row (the common case is decided over whole columns): the same count.
    clean = validate_bars(_table([_bar(0), *real, _bar(6)]), SESSION, "sip", ONE_MINUTE)
    assert (clean.valid.num_rows, clean.rejected.num_rows, clean.flagged) == (6, 0, 4)


def test_duplicates_and_out_of_order_rows_are_rejected() -> None:
    table = _table([_bar(0), _bar(1), _bar(1), _bar(3), _bar(2), _bar(4)])
    result = validate_bars(table, SESSION, "sip", ONE_MINUTE)
    assert result.rejected.column("reason").to_pylist() == ["duplicate timestamp", "out of order"]
    minutes = [t.minute for t in result.valid.column("timestamp").to_pylist()]
    assert minutes == [30, 31, 33, 34]


def test_iex_window_and_wider_timeframes() -> None:
    early = _table([_bar(0, timestamp=dt.datetime(2024, 1, 2, 12, 0, tzinfo=dt.UTC))])
    assert validate_bars(early, SESSION, "iex", ONE_MINUTE).rejected.num_rows == 1
    assert validate_bars(early, SESSION, "sip", ONE_MINUTE).rejected.num_rows == 0
    five = Timeframe.parse("5Min")
    table = _table([_bar(0), _bar(5), _bar(7)])
    assert validate_bars(table, SESSION, "sip", five).rejected["reason"].to_pylist() == ["off grid"]
    daily = _table([_bar(0, timestamp=dt.datetime(2024, 1, 2, 5, 0, tzinfo=dt.UTC))])
    assert validate_bars(daily, SESSION, "sip", Timeframe.parse("1Day")).rejected.num_rows == 0


def _finished_pid() -> int:
    """The process id of a process that has ended."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def test_a_dead_writers_temporary_file_goes_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "symbol=A" / "actions.parquet"
    target.parent.mkdir()
    finished = _finished_pid()
    dead = target.parent / f".actions.parquet.{finished}.1.tmp"
    dead.write_bytes(b"half")
    live = target.parent / f".actions.parquet.{os.getpid()}.99.tmp"
    live.write_bytes(b"being written")
    # A dead writer of another file of the directory (a marker named by the date, say).
    other = target.parent / f".checked-2026-12-01-ab12.json.{finished}.7.tmp"
    other.write_bytes(b"{")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists() and not other.exists() and live.exists()


@pytest.mark.parametrize("with_syncfs", [True, False])
def test_staged_files_appear_whole_at_their_keys_only_on_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_syncfs: bool
) -> None:
    synced: list[Path] = []
    if not with_syncfs:  # a system without syncfs(2): each file and directory is fsynced
        real_fsync = os.fsync
        monkeypatch.setattr(files, "_syncfs", lambda: None)
        monkeypatch.setattr(files.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    lake = LocalStore(tmp_path)
    keys = [f"ohlcv/symbol=A/year=2024/month=01/day={day:02d}/bars.parquet" for day in (2, 3)]
    for number, key in enumerate(keys):
        lake.put_soon(key, f"bytes {number}".encode())
    assert not any(lake.exists(key) for key in keys), "nothing at a final key before flush"
    assert lake.list("ohlcv") == []  # staged temporaries are never listed
    lake.flush()
    assert [lake.get(key) for key in keys] == [b"bytes 0", b"bytes 1"]
    assert not list(tmp_path.rglob("*.tmp"))
    # Without syncfs: both files, then both directories.
    assert len(synced) == (0 if with_syncfs else 4)
    lake.flush()  # nothing staged: nothing happens


def test_each_thread_flushes_only_what_it_staged(tmp_path: Path) -> None:
    lake = LocalStore(tmp_path)
    lake.put_soon("a/one.parquet", b"1")
    other = threading.Thread(target=lambda: (lake.put_soon("b/two.parquet", b"2"), lake.flush()))
    other.start()
    other.join()
    assert lake.exists("b/two.parquet") and not lake.exists("a/one.parquet")
    lake.flush()
    assert lake.get("a/one.parquet") == b"1"


def test_a_killed_runs_temporary_marker_is_removed_from_its_own_runs_directory(
    tmp_path: Path,
) -> None:
    old_run = tmp_path / "_state" / "consolidate" / "20261207T195936Z-4e4ce9"
    old_run.mkdir(parents=True)
    dead = old_run / f".2024_02.done.{_finished_pid()}.140657303721664.tmp"
    live = old_run / f".2024_03.done.{os.getpid()}.7.tmp"
    dead.write_bytes(b"{")
    live.write_bytes(b"{")

    remove_dead_temporaries(tmp_path / "_state")

    assert not dead.exists()
    assert live.exists()  # a live writer's is kept
