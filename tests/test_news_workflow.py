"""News in the workflow: every final day stored, equal to what alpaca-py reads from the
vendor, reruns that do nothing, crashes that resume to the same bytes, updated articles
replaced within recheck_days, and the event helper checked against bars by hand."""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
from pathlib import Path

import pytest

from marketpipe.lake.events import news_events
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.news import NEWS_DIR, calendar_days, news_key, read_news
from marketpipe.lake.reader import read_bars
from marketpipe.markettime.calendar import NEW_YORK, new_york_days_range, trading_sessions
from marketpipe.simulator.news_api import NEWS_UNIVERSE, articles_of
from tests.chaos_trials import lake_hashes, run_crash_trial
from tests.conftest import start_simulator
from tests.workflow_support import (
    END,
    START,
    SYMBOLS,
    copy_of,
    request_log,
    snakemake,
    snakemake_command,
    write_config,
)

pytestmark = pytest.mark.workflow


def test_every_final_day_is_stored_and_equals_what_alpaca_py_reads(reference: Path) -> None:
    from alpaca.data.historical.news import NewsClient
    from alpaca.data.requests import NewsRequest

    lake = reference / "lake"
    for day in calendar_days(START, END):
        assert (lake / news_key(day)).exists(), day
    ours = read_news(SYMBOLS, START, END, data_dir=lake).to_pylist()
    vendor = start_simulator(seed=0)  # the demo vendor's market, at the suite's instant
    try:
        start, end = new_york_days_range(START, END)
        request = NewsRequest(symbols=",".join(SYMBOLS), start=start, end=end)
        theirs = NewsClient("demo", "demo", url_override=vendor.url).get_news(request)
    finally:
        vendor.stop()
    articles = theirs.data["news"]
    assert len(articles) > 100
    assert {(a.id, a.headline, a.updated_at) for a in articles} == {
        (row["id"], row["headline"], row["updated_at"]) for row in ours
    }
    assert len(ours) == len({row["id"] for row in ours})  # each article once
    with CheckpointStore(lake) as store:
        assert set(store.news_entries()) == set(calendar_days(START, END))


def test_a_rerun_is_a_no_op_and_a_crash_while_storing_news_resumes_to_the_same_bytes(
    reference: Path, tmp_path: Path
) -> None:
    workdir = copy_of(reference, tmp_path)
    before = len(request_log(workdir))
    rerun = snakemake(workdir, "--cores", "2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(request_log(workdir)) == before  # nothing asked of the vendor again
    # Take the news files away (the ledger still lists them) and kill the run that
    # writes them again at a random one of those writes; a plain rerun finishes the job.
    shutil.rmtree(workdir / "lake" / NEWS_DIR)
    nth = random.Random("news-crash").randint(1, len(calendar_days(START, END)))
    result = run_crash_trial(
        command=snakemake_command(workdir, "--cores", "2"),
        workdir=workdir,
        data_dir=workdir / "lake",
        point="parquet_write",
        nth=nth,
        reference=lake_hashes(reference / "lake"),
    )
    assert result.crashed and result.passed, result


def _an_update_after_the_range_is_final() -> tuple[dt.date, dt.datetime]:
    """A range end E and an article of E (naming AAPL or MSFT) the vendor updates after
    E's news is final (past New York midnight plus the 30 settle minutes)."""
    for offset in range(40):
        end = dt.date(2024, 1, 5) + dt.timedelta(days=offset)
        final_at = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0, 31), NEW_YORK)
        for symbol in {*NEWS_UNIVERSE, *SYMBOLS}:
            for article in articles_of(0, symbol, end):
                named = set(article.symbols) & set(SYMBOLS)
                if named and article.updated_at is not None and article.updated_at > final_at:
                    return end, article.updated_at
    raise AssertionError("the seeded feed has no late update to test with")


def test_an_article_updated_after_its_day_was_stored_is_replaced_within_recheck_days(
    tmp_path: Path,
) -> None:
    end, updated_at = _an_update_after_the_range_is_final()
    first_now = updated_at - dt.timedelta(minutes=1)
    start = end - dt.timedelta(days=5)
    write_config(tmp_path, start=start, end=end, corporate_actions={"fetch": False})
    env = {**os.environ, "MARKETPIPE_NOW": first_now.isoformat()}
    assert snakemake(tmp_path, "--cores", "2", env=env).returncode == 0
    lake = tmp_path / "lake"
    stored = lake_hashes(lake)
    before = read_news(SYMBOLS, start, end, data_dir=lake)
    # The next New York day, the vendor has published the update: the recheck replaces
    # exactly that day's file and records both versions.
    env["MARKETPIPE_NOW"] = (first_now + dt.timedelta(days=1)).isoformat()
    result = snakemake(tmp_path, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    changed = {key for key, digest in lake_hashes(lake).items() if stored.get(key) != digest}
    assert changed == {news_key(end)}
    after = read_news(SYMBOLS, start, end, data_dir=lake)
    renamed = [
        (old, new)
        for old, new in zip(
            before["headline"].to_pylist(), after["headline"].to_pylist(), strict=True
        )
        if old != new
    ]
    assert len(renamed) == 1 and renamed[0][1] == renamed[0][0] + " (updated)"
    with CheckpointStore(lake) as store:
        (change,) = store.news_history()
    assert change.day == end and change.changed_articles == 1
    assert change.reason == "1 article(s) new or updated at the vendor"
    assert change.old_sha256 == stored[news_key(end)]
    assert change.new_sha256 == lake_hashes(lake)[news_key(end)]
    # A third run the same day asks nothing again.
    requests_so_far = len(request_log(tmp_path))
    assert snakemake(tmp_path, "--cores", "2", env=env).returncode == 0
    assert len(request_log(tmp_path)) == requests_so_far


def _by_hand(bars: list[dict], created: dt.datetime, horizons: tuple[int, ...], ends: dict) -> dict:
    """The event study's numbers from plain rows: entry bar and returns per horizon."""
    after = [bar for bar in bars if bar["timestamp"] >= created]
    if not after:
        return {"entry_price": None}
    entry = after[0]
    session_end = ends[entry["timestamp"].astimezone(NEW_YORK).date()]
    numbers = {"bar_timestamp": entry["timestamp"], "entry_price": entry["open"]}
    for h in horizons:
        until = entry["timestamp"] + dt.timedelta(minutes=h)
        inside = [bar for bar in after if bar["timestamp"] < until]
        numbers[f"return_{h}m"] = (
            inside[-1]["close"] / entry["open"] - 1 if until <= session_end else None
        )
    return numbers


@pytest.mark.parametrize("session", ["extended", "regular"])
def test_the_event_helper_equals_returns_computed_by_hand_from_read_bars(
    reference: Path, session: str
) -> None:
    lake = reference / "lake"
    first, last = dt.date(2024, 1, 2), dt.date(2024, 1, 31)
    articles = read_news(["AAPL"], first, last, data_dir=lake)
    horizons = (1, 5, 30)
    events = news_events(
        articles, data_dir=lake, horizons=horizons, session=session, symbols=["AAPL"]
    )
    assert events.num_rows == articles.num_rows > 10
    bars = read_bars("AAPL", first, dt.date(2024, 2, 2), data_dir=lake, session=session).to_pylist()
    sessions = trading_sessions(first, dt.date(2024, 2, 2))
    ends = {
        s.date: s.close if session == "regular" else s.extended_window("sip")[1] for s in sessions
    }
    checked = 0
    for event in events.to_pylist():
        expected = _by_hand(bars, event["created_at"], horizons, ends)
        for name, value in expected.items():
            assert event[name] == (
                pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
            ), (
                event["id"],
                name,
            )
        checked += sum(event[f"return_{h}m"] is not None for h in horizons)
    assert checked > 10  # real returns were compared, not only nulls


def test_pandas_pyarrow_polars_and_duckdb_read_the_news_directory(reference: Path) -> None:
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    news_dir = reference / "lake" / NEWS_DIR
    expected = sorted(read_news(None, START, END, data_dir=reference / "lake")["id"].to_pylist())
    pattern = f"{news_dir}/**/*.parquet"
    found = {
        "pandas": pd.read_parquet(news_dir)["id"].tolist(),
        "pyarrow": ds.dataset(news_dir, partitioning="hive").to_table()["id"].to_pylist(),
        "polars": pl.scan_parquet(pattern, hive_partitioning=True).collect()["id"].to_list(),
        "duckdb": [
            row[0] for row in duckdb.sql(f"SELECT id FROM read_parquet('{pattern}')").fetchall()
        ],
    }
    for reader, ids in found.items():
        assert sorted(ids) == expected, reader
