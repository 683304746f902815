"""Vendor parity: a Massive/Polygon lake and an Alpaca-format lake filled from the
simulator's one truth keep the same corporate actions and news and give the same adjusted
reads, and the official ``massive`` client reads the simulator's splits, dividends and news
exactly as MarketPipe stores them."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import marketpipe
from marketpipe.lake.actions import actions_of, publish_actions, read_actions
from marketpipe.lake.compare import reconcile_lakes
from marketpipe.markettime.calendar import new_york_days_range
from marketpipe.markettime.timeutil import format_rfc3339
from tests.workflow_support import simulator_process, snakemake, write_config

pytestmark = pytest.mark.workflow

SYMBOLS = ["AAPL", "MSFT"]
# AAPL's 4-for-1 split (ex 2024-02-12) and cash dividend (ex 2024-02-09), MSFT's dividend
# (ex 2024-02-14): the demo market's actions inside the range.
RANGE = {"symbols": SYMBOLS, "start": "2024-02-05", "end": "2024-02-16"}
# What both vendors say of an action (Massive's splits carry no record date, and its ids and
# processing dates are its own).
SAME = ("symbol", "type", "ex_date", "old_rate", "new_rate", "rate")


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(Alpaca-format lake, Massive lake, the Massive simulator's request log)."""
    alpaca = tmp_path_factory.mktemp("alpaca")
    write_config(alpaca, **RANGE)
    result = snakemake(alpaca, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    polygon = tmp_path_factory.mktemp("polygon")
    log = polygon / "requests.jsonl"
    env = {**os.environ, "POLYGON_API_KEY": "polygon-demo-key"}
    with simulator_process(log) as url:
        write_config(
            polygon,
            **RANGE,
            vendor="polygon",
            polygon={"base_url": url, "requests_per_minute": 10_000},
        )
        result = snakemake(polygon, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return alpaca / "lake", polygon / "lake", log


def comparable(lake: Path) -> list[tuple]:
    """Each stored action's vendor-independent fields and its reference close."""
    rows = []
    for table in actions_of(lake, SYMBOLS).values():
        for row in table.to_pylist():
            rows.append((*(row[name] for name in SAME), row["reference_close"]))
    return sorted(rows, key=repr)


def test_both_lakes_keep_the_same_corporate_actions(lakes: tuple[Path, Path, Path]) -> None:
    alpaca, polygon, _ = lakes
    kept = comparable(polygon)
    assert kept == comparable(alpaca)
    assert {row[1] for row in kept} == {"forward_split", "cash_dividend"}
    assert all(row[-1] is not None for row in kept if row[1] == "cash_dividend")


@pytest.mark.parametrize("adjustment", ["raw", "split", "dividend", "all"])
def test_adjusted_reads_are_equal_across_vendors(
    lakes: tuple[Path, Path, Path], adjustment: str
) -> None:
    alpaca, polygon, _ = lakes
    start, end = RANGE["start"], RANGE["end"]
    ours = marketpipe.read_bars(SYMBOLS, start, end, data_dir=alpaca, adjustment=adjustment)
    theirs = marketpipe.read_bars(SYMBOLS, start, end, data_dir=polygon, adjustment=adjustment)
    assert ours.num_rows > 1000
    assert theirs.replace_schema_metadata(None).equals(ours.replace_schema_metadata(None))


def test_the_massive_client_reads_the_splits_and_dividends_marketpipe_stores(
    lakes: tuple[Path, Path, Path],
) -> None:
    from massive import RESTClient

    _, polygon, _ = lakes
    stored = {
        row["id"]: row
        for table in actions_of(polygon, SYMBOLS).values()
        for row in table.to_pylist()
    }
    with simulator_process(polygon.parent / "again.jsonl") as url:
        client = RESTClient(api_key="polygon-demo-key", base=url)
        splits = [s for symbol in SYMBOLS for s in client.list_splits(ticker=symbol, order="asc")]
        dividends = [
            d for symbol in SYMBOLS for d in client.list_dividends(ticker=symbol, order="asc")
        ]
    seen = {
        split.id: (split.ticker, split.execution_date, split.split_from, split.split_to)
        for split in splits
    }
    seen |= {
        dividend.id: (dividend.ticker, dividend.ex_dividend_date, dividend.cash_amount)
        for dividend in dividends
    }
    kept = {}
    for action_id, row in stored.items():
        if row["type"] == "cash_dividend":
            kept[action_id] = (row["symbol"], row["ex_date"].isoformat(), row["rate"])
        else:
            when = row["ex_date"].isoformat()
            kept[action_id] = (row["symbol"], when, row["old_rate"], row["new_rate"])
    assert seen == kept and len(kept) == 3


def article_facts(table: pa.Table) -> set[tuple]:
    """What both vendors say of each article: when, headline, symbols, url."""
    return {
        (row["created_at"], row["headline"], tuple(row["symbols"]), row["url"])
        for row in table.to_pylist()
    }


def test_both_lakes_keep_the_same_news(lakes: tuple[Path, Path, Path]) -> None:
    alpaca, polygon, _ = lakes
    start, end = RANGE["start"], RANGE["end"]
    ours = marketpipe.read_news(SYMBOLS, start, end, data_dir=alpaca)
    theirs = marketpipe.read_news(SYMBOLS, start, end, data_dir=polygon)
    assert ours.num_rows > 10
    assert article_facts(theirs) == article_facts(ours)
    assert set(theirs["source"].to_pylist()) == {"Benzinga"}
    insights = [json.loads(raw)["insights"] for raw in theirs["raw"].to_pylist()]
    assert all(
        item["sentiment"] in ("positive", "neutral", "negative") for i in insights for item in i
    )
    assert ours["raw"].null_count == ours.num_rows  # Alpaca's fields all have columns
    events = marketpipe.news_events(theirs, data_dir=polygon, horizons=(5,))
    assert (
        events.num_rows > 0
        and events.num_rows == marketpipe.news_events(ours, data_dir=alpaca, horizons=(5,)).num_rows
    )


def test_the_massive_client_reads_the_news_marketpipe_stores(
    lakes: tuple[Path, Path, Path],
) -> None:
    from massive import RESTClient

    _, polygon, _ = lakes
    start, end = RANGE["start"], RANGE["end"]
    stored = marketpipe.read_news(SYMBOLS, start, end, data_dir=polygon).to_pylist()
    kept = {json.loads(row["raw"])["id"]: (row["headline"], row["symbols"]) for row in stored}
    first, last = new_york_days_range(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    with simulator_process(polygon.parent / "news.jsonl") as url:
        client = RESTClient(api_key="polygon-demo-key", base=url)
        seen = {
            article.id: (article.title, article.tickers)
            for symbol in SYMBOLS
            for article in client.list_ticker_news(
                ticker=symbol,
                published_utc_gte=format_rfc3339(first),
                published_utc_lte=format_rfc3339(last),
                order="asc",
                limit=1000,
            )
        }
    assert seen == kept


def test_reconcile_finds_the_lakes_agree_and_names_a_split_one_lacks(
    lakes: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    alpaca, polygon, _ = lakes
    assert reconcile_lakes(alpaca, polygon).agree
    # A copy of the Massive lake whose AAPL file lost its split: adjusted reads would differ.
    doctored = tmp_path / "lake"
    shutil.copytree(polygon, doctored)
    table = read_actions(doctored, "AAPL")
    assert table is not None
    without = table.filter(pc.not_equal(table["type"], "forward_split"))
    publish_actions(doctored, "AAPL", without)
    found = reconcile_lakes(alpaca, doctored).differences.to_pylist()
    splits = [row for row in found if row["kind"].startswith("split")]
    assert [(r["symbol"], r["kind"], r["value_a"], r["value_b"]) for r in splits] == [
        ("AAPL", "split_missing_in_b", 4.0, None)
    ]
    assert splits[0]["timestamp"].date() == dt.date(2024, 2, 12)
    result = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "reconcile", str(alpaca), str(doctored)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "split_missing_in_b 1" in result.stdout
