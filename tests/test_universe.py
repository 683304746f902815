"""Point-in-time universes: a universe file in either common shape (intervals or
snapshots), each member fetched for its membership days only, ``marketpipe.members``, and
reads of the members that do not call non-member days missing."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

import marketpipe
from marketpipe.markettime.spans import DaySpan, DaySpans
from marketpipe.workflow.universe_file import UniverseFileError, read_universe_file
from tests.securities_book import SECURITIES
from tests.workflow_support import marketpipe_command, snakemake, write_config

INTERVALS = """symbol,start,end
AAPL,2022-09-01,
TWTR,2022-09-01,2022-10-27
MSFT,2022-10-03,2022-10-31
MSFT,2022-11-15,
"""
SNAPSHOTS = """date,tickers
2022-09-01,"AAPL,TWTR"
2022-10-03,"AAPL,TWTR,MSFT"
2022-10-28,"AAPL,MSFT"
2022-11-01,AAPL
2022-11-15,"AAPL,MSFT"
"""
MEMBERSHIP = {
    "AAPL": DaySpans((DaySpan(dt.date(2022, 9, 1), None),)),
    "MSFT": DaySpans(
        (
            DaySpan(dt.date(2022, 10, 3), dt.date(2022, 10, 31)),
            DaySpan(dt.date(2022, 11, 15), None),
        )
    ),
    "TWTR": DaySpans((DaySpan(dt.date(2022, 9, 1), dt.date(2022, 10, 27)),)),
}


def test_both_shapes_of_a_universe_file_say_the_same(tmp_path: Path) -> None:
    intervals, snapshots = tmp_path / "intervals.csv", tmp_path / "snapshots.csv"
    intervals.write_text(INTERVALS)
    snapshots.write_text(SNAPSHOTS)
    assert read_universe_file(intervals) == MEMBERSHIP
    assert read_universe_file(snapshots) == MEMBERSHIP


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ticker,from\nAAPL,2022-01-03\n", "is neither 'symbol,start,end'"),
        ("symbol,start,end\nAAPL,2022-13-01,\n", "line 2: start '2022-13-01' is not"),
        ("symbol,start,end\nAAPL,2022-03-01,2022-02-01\n", "line 2: end 2022-02-01 is before"),
        ("symbol,start,end\nBRK-B,2022-03-01,\n", "line 2: symbol 'BRK-B' is not a valid"),
        ("symbol,start,end\nAAPL,2022-01-03,\nAAPL,2022-06-01,\n", "overlap"),
        ("date,tickers\n2022-01-03,AAPL\n2022-01-03,MSFT\n", "a second snapshot for 2022-01-03"),
        ("symbol,start,end\n", "names no member"),
    ],
)
def test_a_bad_universe_file_is_named_with_its_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "members.csv"
    path.write_text(text)
    with pytest.raises(UniverseFileError, match=str(path)) as caught:
        read_universe_file(path)
    assert says in str(caught.value)


def test_a_missing_universe_file_stops_the_config_in_one_line(tmp_path: Path) -> None:
    write_config(tmp_path, symbols=[], universe={"file": "nowhere.csv"})
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert "universe file nowhere.csv does not exist" in result.stdout + result.stderr


@pytest.mark.workflow
def test_members_are_fetched_and_read_for_their_membership_days(tmp_path: Path) -> None:
    (tmp_path / "members.csv").write_text(SNAPSHOTS)
    write_config(
        tmp_path,
        symbols=["SPY"],
        universe={"file": "members.csv"},
        start="2022-09-01",
        end="2022-11-30",
        timeframe="1Day",
        demo={"securities": list(SECURITIES)},
    )
    result = snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    lake = tmp_path / "lake"
    days = {
        symbol: sorted(
            path.parent.name for path in lake.glob(f"ohlcv/symbol={symbol}/**/*.parquet")
        )
        for symbol in ("AAPL", "MSFT", "TWTR", "SPY")
    }
    assert len(days["AAPL"]) == len(days["SPY"]) == 63  # every session of the range
    assert len(days["TWTR"]) == 40  # 2022-09-01 .. 2022-10-27
    assert len(days["MSFT"]) == 21 + 11  # October, then from November 15 (Thanksgiving off)
    assert marketpipe.members("2022-10-31", data_dir=lake) == ["AAPL", "MSFT"]
    assert marketpipe.members("2022-11-01", data_dir=lake) == ["AAPL"]
    everyone = marketpipe.members("2022-09-01", "2022-11-30", data_dir=lake)
    assert everyone == ["AAPL", "MSFT", "TWTR"]
    bars = marketpipe.read_bars(everyone, "2022-09-01", "2022-11-30", data_dir=lake)
    counts = {row["values"]: row["counts"] for row in bars["symbol"].value_counts().to_pylist()}
    assert counts == {"AAPL": 63, "MSFT": 32, "TWTR": 40}
    planned = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in planned.stdout + planned.stderr
    status = subprocess.run(
        marketpipe_command("status", "--json"), cwd=tmp_path, capture_output=True, text=True
    )
    document = json.loads(status.stdout)
    assert document["config"]["complete"] is True
    with pytest.raises(marketpipe.NoUniverseError, match="keeps no universe"):
        marketpipe.members("2022-10-03", data_dir=tmp_path / "elsewhere")
