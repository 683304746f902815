"""News that stays whole: a symbol added later gets the days stored before it, an article
lands in its own day whichever window the vendor put it in, and refused records are counted
by the recheck as by the fetch."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.news import calendar_days, read_news
from marketpipe.markettime.calendar import NEW_YORK
from marketpipe.simulator.news_api import NEWS_UNIVERSE, articles_of
from tests.workflow_support import SYMBOLS, marketpipe_command, snakemake, write_config

pytestmark = pytest.mark.workflow

START, END = dt.date(2024, 2, 5), dt.date(2024, 2, 9)


def truth(symbols: list[str], now: dt.datetime) -> set[tuple[int, dt.datetime]]:
    """Every article created in START..END naming one of ``symbols``, in the version the
    vendor serves at ``now``: (id, updated_at)."""
    found = set()
    for day in calendar_days(START, END):
        for symbol in {*NEWS_UNIVERSE, *symbols}:
            for article in articles_of(0, symbol, day):
                if set(article.symbols) & set(symbols):
                    found.add((article.id, article.version_time(now)))
    return found


def stored(lake: Path, symbols: list[str]) -> set[tuple[int, dt.datetime]]:
    table = read_news(symbols, START, END, data_dir=lake)
    return set(zip(table["id"].to_pylist(), table["updated_at"].to_pylist(), strict=True))


def environment(now: dt.datetime) -> dict[str, str]:
    return {**os.environ, "MARKETPIPE_NOW": now.isoformat()}


@pytest.mark.parametrize("window", ["created_at", "updated_at"])
def test_every_article_lands_in_its_own_day_whichever_time_the_window_selects_on(
    tmp_path: Path, window: str
) -> None:
    # The day after END's news is final; a day later the recheck asks again.
    first = dt.datetime.combine(END + dt.timedelta(days=1), dt.time(1, 0), NEW_YORK)
    config = {"start": START, "end": END, "corporate_actions": {"fetch": False}}
    write_config(tmp_path, **config, demo={"news_window": window})
    assert snakemake(tmp_path, "--cores", "2", env=environment(first)).returncode == 0
    lake = tmp_path / "lake"
    if window == "created_at":  # every article of the range is there from the first run
        assert stored(lake, SYMBOLS) == truth(SYMBOLS, first)
    later = first + dt.timedelta(days=1, hours=8)  # every update of END's articles is out
    result = snakemake(tmp_path, "--cores", "2", env=environment(later))
    assert result.returncode == 0, result.stderr[-3000:]
    assert stored(lake, SYMBOLS) == truth(SYMBOLS, later)


def test_a_symbol_added_later_gets_the_news_of_the_days_stored_before_it(
    tmp_path: Path,
) -> None:
    now = dt.datetime.combine(END + dt.timedelta(days=3), dt.time(9, 0), NEW_YORK)
    env = environment(now)
    config = {"start": START, "end": END, "corporate_actions": {"fetch": False}}
    write_config(tmp_path, **config)
    assert snakemake(tmp_path, "--cores", "2", env=env).returncode == 0
    lake = tmp_path / "lake"
    added = [*SYMBOLS, "NVDA"]
    write_config(tmp_path, **config, symbols=added)
    status = marketpipe_status(tmp_path, env)
    assert "lack the news of a symbol added since" in status
    dry = snakemake(tmp_path, "-n", env=env)
    assert "rule news_2024_02" in dry.stdout + dry.stderr
    result = snakemake(tmp_path, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert stored(lake, ["NVDA"]) == truth(["NVDA"], now) != set()
    assert stored(lake, added) == truth(added, now)
    with CheckpointStore(lake) as store:
        entries = store.news_entries()
    assert all(entries[day].covers(added) for day in calendar_days(START, END))
    assert "lack the news" not in marketpipe_status(tmp_path, env)
    assert "Nothing to be done" in snakemake(tmp_path, "-n", env=env).stdout


def marketpipe_status(workdir: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        marketpipe_command("status"), cwd=workdir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
