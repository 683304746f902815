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
from marketpipe.lake.actions import ACTIONS_DIR
from marketpipe.lake.compare import KINDS, NothingToCompareError, reconcile_lakes
from marketpipe.lake.news import NEWS_DIR
from marketpipe.lake.storage import LAKE_DIR, parquet_bytes, partition_path, read_verified
from marketpipe.lake.tolerance import PriceTolerance
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


COPIED = (LAKE_DIR, NEWS_DIR, ACTIONS_DIR)  # the data sets reconcile compares


@pytest.fixture
def lakes(reference: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The reference lake, and a copy of its data to tamper with."""
    copy = tmp_path / "copy"
    for area in COPIED:
        if (reference / "lake" / area).is_dir():
            shutil.copytree(reference / "lake" / area, copy / area)
    return reference / "lake", copy


def test_identical_lakes_agree_and_say_what_was_compared(
    lakes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = reconcile_lakes(*lakes)
    assert result.agree and result.differences.num_rows == 0
    assert result.summary.num_rows == 2 * 61  # AAPL and MSFT, every session of Jan-Mar 2024
    assert set(result.summary["matching_minutes"].to_pylist()) != {0}
    assert set(result.counts().values()) == {0} and set(KINDS) <= set(result.counts())
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


def add_to_close(cents: float) -> Callable[[pa.Table, int], pa.Table]:
    def changed(table: pa.Table, row: int) -> pa.Table:
        values = table["close"].to_pylist()
        values[row] = round(values[row] + cents / 100, 4)
        index = table.schema.get_field_index("close")
        return table.set_column(index, table.schema.field(index), [values])

    return changed


def test_prices_are_compared_in_ticks_by_default_and_bounds_narrow_the_comparison(
    lakes: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = lakes
    before = change_bar(b, ("AAPL", dt.date(2024, 2, 5), 100), add_to_close(1))  # a tick
    change_bar(b, VOLUMED, scale("volume", 1.04))  # within 5%
    assert before["close"] > 100  # a relative 1e-4 would allow more than a cent here
    default = reconcile_lakes(a, b)
    assert default.differences["kind"].to_pylist() == ["close"]
    assert not reconcile_lakes(a, b, price_tolerance="0.01").differences.num_rows
    assert reconcile_lakes(a, b, price_tolerance="1bp").agree
    strict = reconcile_lakes(a, b, volume_tolerance=0.0)
    assert strict.differences["kind"].to_pylist() == ["close", "volume"]
    only_march = reconcile_lakes(
        a, b, start=dt.date(2024, 3, 1), symbols=["MSFT"], volume_tolerance=0.0
    )
    assert only_march.differences["kind"].to_pylist() == ["volume"]
    assert only_march.summary.num_rows == 20  # MSFT's March sessions
    with pytest.raises(NothingToCompareError, match="no \\(symbol, session\\) partition"):
        reconcile_lakes(a, b, start=dt.date(2025, 1, 2))
    with pytest.raises(ValueError, match="price tolerance 'cheap' is not 0"):
        reconcile_lakes(a, b, price_tolerance="cheap")
    assert main(["reconcile", str(a), str(b), "--symbols", "NVDA"]) == 2
    assert "hold no (symbol, session) partition" in capsys.readouterr().err
    assert main(["reconcile", str(a), str(b), "--output", "x.csv"]) == 2
    assert main(["reconcile", str(a), str(b)]) == 1
    assert "close 1" in capsys.readouterr().out
    assert main(["reconcile", str(a), str(b), "--price-tolerance", "0.01"]) == 0


def test_a_price_tolerance_reads_ticks_dollars_and_basis_points() -> None:
    assert PriceTolerance.parse("0") == PriceTolerance("ticks")
    assert PriceTolerance.parse("0.01") == PriceTolerance("absolute", 0.01)
    assert PriceTolerance.parse("1bp") == PriceTolerance("relative", 1e-4)
    a = pa.chunked_array([[190.00, 190.00, 0.5000, 0.5000, 100.0, None]])
    b = pa.chunked_array([[190.01, 190.004, 0.5001, 0.50004, 100.0, 1.0]])
    assert PriceTolerance("ticks").differs(a, b).to_pylist() == [
        True,
        False,  # float noise below half a cent
        True,  # below $1 the tick is $0.0001
        False,
        False,
        False,  # one side has no value
    ]
    assert PriceTolerance.parse("0.01").differs(a, b).to_pylist()[0] is False
    with pytest.raises(ValueError, match="must be 0 or more dollars"):
        PriceTolerance.parse("-1")


def test_what_one_lake_lacks_is_a_difference_unless_missing_is_allowed(
    lakes: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = lakes
    lacking = ("AAPL", dt.date(2024, 1, 2))
    bars = len(read_verified(partition_path(b, *lacking), "AAPL"))
    partition_path(b, *lacking).unlink()  # B never fetched that session
    path = partition_path(b, "AAPL", dt.date(2024, 1, 3))
    iex = read_verified(path, str(path))
    path.write_bytes(parquet_bytes(drop(iex, 5), {"marketpipe.feed": "iex"}))
    shutil.rmtree(b / LAKE_DIR / "symbol=MSFT")  # a whole symbol
    news_day = sorted((b / NEWS_DIR).rglob("*.parquet"))[0]
    news_day.unlink()
    result = reconcile_lakes(a, b)
    assert not result.agree
    counts = result.counts()
    assert counts["day_missing_in_b"] == 1 + 61 and counts["news_day_missing_in_b"] == 1
    assert counts["actions_missing_in_a"] == counts["actions_missing_in_b"] == 0
    one_day = result.differences.filter(
        pa.compute.equal(result.differences["kind"], "day_missing_in_b")
    ).to_pylist()[0]
    assert (one_day["symbol"], one_day["value_a"], one_day["value_b"]) == ("AAPL", bars, None)
    assert one_day["timestamp"].date() == lacking[1]
    assert result.summary.num_rows == 2 * 61
    # The other way round, B's gaps are A's extra partitions.
    assert reconcile_lakes(b, a).counts()["day_missing_in_a"] == 62
    output = tmp_path / "d.parquet"
    assert main(["reconcile", str(a), str(b), "--output", str(output)]) == 1
    out = capsys.readouterr().out
    assert "day_missing_in_b 62" in out and "--allow-missing" in out
    assert pq.read_table(output).equals(result.differences)
    # Only what both hold: the iex day's missing minutes, explained.
    allowed = reconcile_lakes(a, b, allow_missing=True)
    assert allowed.b.feed == "iex" and allowed.summary.num_rows == 60
    (row,) = [row for row in allowed.summary.to_pylist() if row["missing_in_b"]]
    assert "feeds differ (sip vs iex)" in row["notes"]
    assert allowed.differences["kind"].to_pylist() == ["missing_in_b"]
    assert main(["reconcile", str(a), str(b), "--allow-missing", "--symbols", "NVDA"]) == 2


def test_a_failure_inside_reconcile_is_one_line_and_exit_2(
    lakes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError("Access Denied (403) for s3://bucket/lake\n  more detail")

    monkeypatch.setattr("marketpipe.commands.reconcile.reconcile_lakes", denied)
    assert main(["reconcile", *map(str, lakes)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "marketpipe reconcile: failed: PermissionError: Access Denied (403) for s3://bucket/lake\n"
    )


def test_a_lake_on_s3_reconciles_like_a_local_one(
    lakes: tuple[Path, Path], s3_api: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = lakes
    change_bar(b, CLOSED, scale("close", 1.01))
    bucket = s3_api.create_bucket()
    for path in sorted(b.rglob("*.parquet")):
        key = f"lake/{path.relative_to(b).as_posix()}"
        s3_api.put_directly(bucket, [key], path.read_bytes())
    s3_api.point_here(monkeypatch)
    on_s3 = reconcile_lakes(a, f"s3://{bucket}/lake")
    assert on_s3.differences.equals(reconcile_lakes(a, b).differences)
    assert on_s3.differences["kind"].to_pylist() == ["close"]
    assert on_s3.b.uri == f"s3://{bucket}/lake"
