"""The workflow keeps the security master: a ``security_master`` job once per day (and when
the symbols or range end change), from the corporate actions of an Alpaca-format lake and
from Polygon's reference data, read by ``marketpipe securities`` and
``marketpipe.securities``. The simulator renames FB to META on 2022-06-09."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import marketpipe
from marketpipe.markettime.calendar import NEW_YORK
from marketpipe.simulator import read_request_log
from marketpipe.simulator.assets_api import asset_id
from tests.securities_book import META_FIGI, SECURITIES
from tests.workflow_support import (
    marketpipe_command,
    request_log,
    simulator_process,
    snakemake,
    write_config,
)

META = [record for record in SECURITIES if record["name"].startswith("Meta")]
RANGE = {"symbols": ["META"], "start": "2022-06-06", "end": "2022-06-10"}


def cli(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``marketpipe ARGS`` in ``workdir``, with ``env`` added to the environment."""
    return subprocess.run(
        marketpipe_command(*args),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def securities_command(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return cli(workdir, "securities", *args, **env)


@pytest.mark.workflow
def test_an_alpaca_format_lake_keeps_the_renames_its_corporate_actions_tell(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, **RANGE, demo={"securities": META})
    missing = securities_command(tmp_path)
    assert missing.returncode == 1 and "has no security master yet" in missing.stderr
    result = snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    shown = securities_command(tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    facebook = asset_id("FB@2012-05-18")  # Alpaca's asset id, kept across the rename
    assert lines[1].startswith(
        f"META: {facebook} Meta Platforms, Inc.: active (demo /v1/corporate-actions, "
        "/v2/assets, asked "
    )
    assert lines[2:] == ["  FB       until 2022-06-08", "  META     since 2022-06-09"]
    rows = marketpipe.securities("META", data_dir=tmp_path / "lake").to_pylist()
    assert [(row["ticker"], row["vendor"]) for row in rows] == [("FB", "demo"), ("META", "demo")]
    status = cli(tmp_path, "status")
    assert "META: active, also traded as FB" in status.stdout.splitlines()
    again = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # Either name reads the security: FB's days are META's bars before the rename. FB is
    # no symbol of this lake, so after the rename it names nothing the lake holds.
    lake = tmp_path / "lake"
    by_old_name = marketpipe.read_bars("FB", "2022-06-06", "2022-06-08", data_dir=lake)
    by_new_name = marketpipe.read_bars("META", "2022-06-06", "2022-06-08", data_dir=lake)
    assert by_old_name.num_rows > 0 and set(by_old_name["symbol"].to_pylist()) == {"FB"}
    assert by_old_name.drop(["symbol"]).equals(by_new_name.drop(["symbol"]))
    with pytest.raises(marketpipe.MissingPartitionsError, match="FB 2022-06-09, FB 2022-06-10"):
        marketpipe.read_bars("FB", "2022-06-06", "2022-06-10", data_dir=lake)
    # A new symbol is asked about in the next run, the others' rows stay.
    write_config(tmp_path, **{**RANGE, "symbols": ["META", "AAPL"]}, demo={"securities": META})
    planned = snakemake(tmp_path, "-n")
    assert "security_master" in planned.stdout
    assert snakemake(tmp_path, "--cores", "2").returncode == 0
    both = json.loads(securities_command(tmp_path, "--json").stdout)
    assert sorted({row["symbol"] for row in both}) == ["AAPL", "META"]
    unknown = securities_command(tmp_path, "NVDA")
    assert unknown.returncode == 1 and "NVDA is not in the security master" in unknown.stderr


@pytest.mark.workflow
def test_a_polygon_lake_keeps_what_the_reference_data_says(tmp_path: Path) -> None:
    book = tmp_path / "securities.yaml"
    book.write_text(yaml.safe_dump(SECURITIES))
    env = {"POLYGON_API_KEY": "polygon-demo-key"}
    with simulator_process(tmp_path / "requests.jsonl", "--securities", str(book)) as url:
        write_config(
            tmp_path,
            **RANGE,
            vendor="polygon",
            polygon={"base_url": url, "requests_per_minute": 10_000},
        )
        result = snakemake(tmp_path, "--cores", "2", env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(securities_command(tmp_path, "--json", **env).stdout)
    assert [(row["ticker"], row["valid_from"], row["valid_to"]) for row in rows] == [
        ("FB", "2012-05-18", "2022-06-08"),
        ("META", "2022-06-09", None),
    ]
    assert {(row["security_id"], row["name"], row["vendor"]) for row in rows} == {
        (META_FIGI, "Meta Platforms, Inc.", "polygon")
    }


@pytest.mark.workflow
def test_alpaca_requests_name_the_security_of_the_ranges_last_day(tmp_path: Path) -> None:
    # FB was Facebook's in March 2021 and is another company's today: asked with Alpaca's
    # default asof (today) it would name the newcomer, which has no bars in 2021.
    write_config(
        tmp_path,
        symbols=["FB"],
        start="2021-03-01",
        end="2021-03-05",
        demo={"securities": list(SECURITIES)},
    )
    result = snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    bars = [entry for entry in request_log(tmp_path) if entry.path == "/v2/stocks/bars"]
    assert bars and {entry.params.get("asof") for entry in bars} == {"2021-03-06"}
    days = marketpipe.read_bars("FB", "2021-03-01", "2021-03-05", data_dir=tmp_path / "lake")
    assert days.num_rows > 0
    dates = {stamp.astimezone(NEW_YORK).date() for stamp in days["timestamp"].to_pylist()}
    assert len(dates) == 5  # every session of the week


@pytest.mark.workflow
def test_status_says_when_a_security_was_delisted(tmp_path: Path) -> None:
    # TWTR traded through 2022-10-27 and was taken over for cash.
    write_config(
        tmp_path,
        symbols=["TWTR", "AAPL"],
        start="2022-10-24",
        end="2022-10-31",
        demo={"securities": list(SECURITIES)},
    )
    result = snakemake(tmp_path, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    status = cli(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "TWTR: delisted on 2022-10-28" in status.stdout.splitlines()
    assert not any(line.startswith("AAPL:") for line in status.stdout.splitlines())
    document = json.loads(cli(tmp_path, "status", "--json").stdout)
    assert {row["symbol"]: row["status"] for row in document["securities"]} == {
        "AAPL": "active",
        "TWTR": "delisted on 2022-10-28",
    }
    # The sessions after the delisting hold no bars and are not missing.
    assert document["config"]["complete"] is True
    bars = marketpipe.read_bars("TWTR", "2022-10-24", "2022-10-31", data_dir=tmp_path / "lake")
    days = {
        stamp.astimezone(NEW_YORK).date().isoformat() for stamp in bars["timestamp"].to_pylist()
    }
    assert max(days) == "2022-10-27"


LIFE = {  # a rename, a delisting, a late listing and a reused ticker, in daily bars
    "symbols": ["META", "TWTR", "ARM", "FB"],
    "start": "2022-06-01",
    "end": "2023-09-29",
    "timeframe": "1Day",
}


def bar_days(lake: Path, symbol: str, start: str, end: str) -> list[str]:
    """The New York days of ``symbol``'s bars in ``lake``."""
    bars = marketpipe.read_bars(symbol, start, end, data_dir=lake)
    return sorted(
        {stamp.astimezone(NEW_YORK).date().isoformat() for stamp in bars["timestamp"].to_pylist()}
    )


@pytest.mark.workflow
def test_one_truth_in_both_formats_is_whole_and_reconciles(tmp_path: Path) -> None:
    alpaca, polygon = tmp_path / "alpaca", tmp_path / "polygon"
    write_config(alpaca, **LIFE, demo={"securities": list(SECURITIES)})
    result = snakemake(alpaca, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    book = tmp_path / "securities.yaml"
    book.write_text(yaml.safe_dump(list(SECURITIES)))
    env = {**os.environ, "POLYGON_API_KEY": "polygon-demo-key"}
    log = tmp_path / "requests.jsonl"
    with simulator_process(log, "--securities", str(book)) as url:
        write_config(
            polygon,
            **LIFE,
            vendor="polygon",
            polygon={"base_url": url, "requests_per_minute": 10_000},
        )
        result = snakemake(polygon, "--cores", "2", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        again = snakemake(polygon, "-n", env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
    aggregates = [entry.path for entry in read_request_log(log) if "/v2/aggs/" in entry.path]
    assert any("/ticker/FB/" in path for path in aggregates)  # META's days before 2022-06-09
    for lake in (alpaca / "lake", polygon / "lake"):
        meta = bar_days(lake, "META", "2022-06-01", "2022-06-30")
        assert meta[:7] == [f"2022-06-{day:02d}" for day in (1, 2, 3, 6, 7, 8, 9)]
        assert bar_days(lake, "TWTR", "2022-06-01", "2023-09-29")[-1] == "2022-10-27"
        assert bar_days(lake, "ARM", "2022-06-01", "2023-09-29")[0] == "2023-09-14"
        # FB names the company that took the ticker up in 2023: Facebook's bars stay out.
        assert bar_days(lake, "FB", "2022-06-01", "2023-09-29")[0] == "2023-03-01"
    lakes = [str(alpaca / "lake"), str(polygon / "lake")]
    compared = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "reconcile", "--allow-missing", *lakes],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "the lakes agree" in compared.stdout
    lake = polygon / "lake"
    # A longer range: the delisted and the not yet listed days are not planned, not
    # missing, and a read wider than a security's life returns its listed days.
    with simulator_process(log, "--securities", str(book)) as url:
        longer = {**LIFE, "end": "2023-10-31"}
        config = {"vendor": "polygon", "polygon": {"base_url": url, "requests_per_minute": 10_000}}
        write_config(polygon, **longer, **config)
        planned = snakemake(polygon, "-n", env=env)
        assert "TWTR" not in planned.stdout + planned.stderr.replace("TWTR, ARM", "")
        result = snakemake(polygon, "--cores", "2", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    for symbol in ("META", "ARM", "FB"):
        assert (lake / "ohlcv" / f"symbol={symbol}" / "year=2023" / "month=10").is_dir()
    assert not (lake / "ohlcv" / "symbol=TWTR" / "year=2023" / "month=10").exists()
    assert bar_days(lake, "TWTR", "2022-10-03", "2023-10-31")[-1] == "2022-10-27"
    status = cli(polygon, "status", "--require-complete", POLYGON_API_KEY="polygon-demo-key")
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.workflow
def test_a_rename_after_the_backfill_is_followed_and_said_once(tmp_path: Path) -> None:
    # FB backfilled before Facebook became META; the daily update goes on under META, into
    # the same series, and the run's verdict says so once.
    write_config(
        tmp_path,
        symbols=["FB"],
        start="2022-05-23",
        end="today",
        timeframe="1Day",
        demo={"securities": META},
    )

    def run_at(moment: str) -> subprocess.CompletedProcess:
        return snakemake(tmp_path, "--cores", "2", env={**os.environ, "MARKETPIPE_NOW": moment})

    before = run_at("2022-06-03T12:00:00-04:00")
    assert before.returncode == 0, before.stderr[-3000:]
    outputs = []
    for _ in range(2):  # the rename's day, and a rerun (for days a racing job left empty)
        after = run_at("2022-06-15T12:00:00-04:00")
        outputs.append(after.stdout + after.stderr)
    said = [line for text in outputs for line in text.splitlines() if "now trades as" in line]
    assert len(said) == 1, outputs
    assert said[0].startswith("  note: FB now trades as META (since 2022-06-09)")
    lake = tmp_path / "lake"
    assert bar_days(lake, "FB", "2022-05-23", "2022-06-14") == [
        day.isoformat()
        for day in (
            *(dt.date(2022, 5, day) for day in (23, 24, 25, 26, 27, 31)),
            *(dt.date(2022, 6, day) for day in (1, 2, 3, 6, 7, 8, 9, 10, 13, 14)),
        )
    ]
    rows = marketpipe.securities("FB", data_dir=lake).to_pylist()
    assert [row["ticker"] for row in rows] == ["FB", "META"]
