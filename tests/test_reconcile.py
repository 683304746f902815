"""Cross-source reconciliation: two lakes compared minute by minute, local and on S3."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import marketpipe
from marketpipe.cli import main
from marketpipe.lake.compare import KINDS, NothingToCompareError, reconcile_lakes
from marketpipe.lake.storage import LAKE_DIR, parquet_bytes, partition_path, read_verified
from tests.s3_server import S3Server

DROPPED = ("AAPL", dt.date(2024, 1, 3), 10)
CLOSED = ("MSFT", dt.date(2024, 2, 5), 100)
VOLUMED = ("MSFT", dt.date(2024, 3, 5), 200)


def change_bar(
    lake: Path, where: tuple[str, dt.date, int], change: Callable[..., pa.Table]
) -> dict:
    """Rewrite one partition (checksums and metadata kept valid) with ``change`` applied to
    the bar at the row index; return that bar as it was."""
    symbol, day, row = where
    path = partition_path(lake, symbol, day)
    table = read_verified(path, str(path))
    before = table.slice(row, 1).to_pylist()[0]
    path.write_bytes(parquet_bytes(change(table, row), {}))
    return before


def drop(table: pa.Table, row: int) -> pa.Table:
    return pa.concat_tables([table.slice(0, row), table.slice(row + 1)])


def scale(column: str, factor: float) -> Callable[[pa.Table, int], pa.Table]:
    def changed(table: pa.Table, row: int) -> pa.Table:
        values = table[column].to_pylist()
        values[row] *= factor
        index = table.schema.get_field_index(column)
        return table.set_column(index, table.schema.field(index), [values])

    return changed


@pytest.fixture
def lakes(reference: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The reference lake, and a copy of its bars to tamper with."""
    copy = tmp_path / "copy"
    shutil.copytree(reference / "lake" / LAKE_DIR, copy / LAKE_DIR)
    return reference / "lake", copy


def test_identical_lakes_agree_and_say_what_was_compared(
    lakes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = reconcile_lakes(*lakes)
    assert result.agree and result.differences.num_rows == 0
    assert result.summary.num_rows == 2 * 61  # AAPL and MSFT, every session of Jan-Mar 2024
    assert set(result.summary["matching_minutes"].to_pylist()) != {0}
    assert result.counts() == dict.fromkeys(KINDS, 0)
    assert (result.a.vendor, result.a.feed) == ("demo", "sip")
    assert main(["reconcile", str(lakes[0]), str(lakes[1])]) == 0
    assert "the lakes agree" in capsys.readouterr().out


def test_a_dropped_bar_a_changed_close_and_volume_are_exactly_three_rows(
    lakes: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = lakes
    dropped = change_bar(b, DROPPED, drop)
    closed = change_bar(b, CLOSED, scale("close", 1.01))
    volumed = change_bar(b, VOLUMED, scale("volume", 2.0))
    differences = marketpipe.reconcile(a, b)
    assert differences.to_pylist() == [
        {
            "symbol": "AAPL",
            "timestamp": dropped["timestamp"],
            "kind": "missing_in_b",
            "value_a": dropped["volume"],
            "value_b": None,
        },
        {
            "symbol": "MSFT",
            "timestamp": closed["timestamp"],
            "kind": "close",
            "value_a": closed["close"],
            "value_b": closed["close"] * 1.01,
        },
        {
            "symbol": "MSFT",
            "timestamp": volumed["timestamp"],
            "kind": "volume",
            "value_a": volumed["volume"],
            "value_b": volumed["volume"] * 2.0,
        },
    ]
    # The other way round, the dropped bar is missing in A.
    assert marketpipe.reconcile(b, a)["kind"].to_pylist()[0] == "missing_in_a"
    files = {name: tmp_path / name for name in ("d.parquet", "s.parquet", "r.html")}
    options = ["--output", files["d.parquet"], "--summary", files["s.parquet"]]
    code = main(["reconcile", str(a), str(b), *map(str, options), "--html", str(files["r.html"])])
    assert code == 1
    out = capsys.readouterr().out
    assert "3 difference(s): missing_in_b 1, close 1, volume 1" in out
    assert "AAPL 2024-01-03: missing_in_b 1" in out and "MSFT 2024-03-05: volume 1" in out
    assert pq.read_table(files["d.parquet"]).equals(differences)
    summary = pq.read_table(files["s.parquet"]).to_pylist()
    aapl = next(row for row in summary if (row["symbol"], row["date"]) == DROPPED[:2])
    assert aapl["minutes_a"] == aapl["minutes_b"] + 1 == aapl["matching_minutes"] + 1
    assert aapl["volume_ratio"] == pytest.approx(1 - dropped["volume"] / aapl["volume_a"])
    page = files["r.html"].read_text()
    assert "differ (3 differences)" in page and "<td>2024-02-05</td>" in page


def test_tolerances_are_relative_and_bounds_narrow_the_comparison(
    lakes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = lakes
    change_bar(b, CLOSED, scale("close", 1.00005))  # half a basis point
    change_bar(b, VOLUMED, scale("volume", 1.04))  # within 5%
    assert reconcile_lakes(a, b).agree
    strict = reconcile_lakes(a, b, price_tolerance=0.0, volume_tolerance=0.0)
    assert strict.differences["kind"].to_pylist() == ["close", "volume"]
    only_march = reconcile_lakes(a, b, start=dt.date(2024, 3, 1), symbols=["MSFT"], **_exact())
    assert only_march.differences["kind"].to_pylist() == ["volume"]
    assert only_march.summary.num_rows == 20  # MSFT's March sessions
    with pytest.raises(NothingToCompareError, match="no \\(symbol, session\\) partition in common"):
        reconcile_lakes(a, b, start=dt.date(2025, 1, 2))
    with pytest.raises(ValueError, match="price_tolerance must be a relative difference"):
        reconcile_lakes(a, b, price_tolerance=2.0)
    assert main(["reconcile", str(a), str(b), "--symbols", "NVDA"]) == 2
    assert "hold no (symbol, session) partition in common" in capsys.readouterr().err
    assert main(["reconcile", str(a), str(b), "--output", "x.csv"]) == 2


def _exact() -> dict[str, float]:
    return {"price_tolerance": 0.0, "volume_tolerance": 0.0}


def test_only_sessions_both_lakes_hold_are_compared_and_feeds_are_named(
    lakes: tuple[Path, Path],
) -> None:
    a, b = lakes
    partition_path(b, "AAPL", dt.date(2024, 1, 2)).unlink()  # B never fetched that session
    path = partition_path(b, "AAPL", dt.date(2024, 1, 3))
    iex = read_verified(path, str(path))
    path.write_bytes(parquet_bytes(drop(iex, 5), {"marketpipe.feed": "iex"}))
    shutil.rmtree(b / LAKE_DIR / "symbol=MSFT")
    result = reconcile_lakes(a, b)
    assert result.b.feed == "iex" and result.summary.num_rows == 60
    (row,) = [row for row in result.summary.to_pylist() if row["missing_in_b"]]
    assert "feeds differ (sip vs iex)" in row["notes"]
    assert result.differences["kind"].to_pylist() == ["missing_in_b"]


def test_a_lake_on_s3_reconciles_like_a_local_one(
    lakes: tuple[Path, Path], s3_api: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = lakes
    change_bar(b, CLOSED, scale("close", 1.01))
    bucket = s3_api.create_bucket()
    for path in sorted((b / LAKE_DIR).rglob("*.parquet")):
        key = f"lake/{path.relative_to(b).as_posix()}"
        s3_api.put_directly(bucket, [key], path.read_bytes())
    s3_api.point_here(monkeypatch)
    on_s3 = reconcile_lakes(a, f"s3://{bucket}/lake")
    assert on_s3.differences.equals(reconcile_lakes(a, b).differences)
    assert on_s3.differences["kind"].to_pylist() == ["close"]
    assert on_s3.b.uri == f"s3://{bucket}/lake"
