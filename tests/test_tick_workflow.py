"""Trades and quotes in the workflow: planned and named by a dry run, stored as alpaca-py
reads them from the vendor, recorded and verified, a damaged day moved aside and fetched
again, an unrecorded day adopted without a request, and a crash resumed to the same bytes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

import marketpipe
from marketpipe.connectors import PolygonTradesClient
from marketpipe.connectors.ticks import TicksQuery
from marketpipe.lake import ticks as lake_ticks
from marketpipe.lake.compare import reconcile_lakes
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.s3_store import S3Store
from marketpipe.lake.ticks import tick_key
from marketpipe.markettime.calendar import new_york_days_range
from marketpipe.simulator.request_log import read_request_log
from marketpipe.simulator.settings import DEMO_SECURITIES
from tests.chaos_trials import lake_hashes, run_crash_trial
from tests.conftest import RemoteSimulator, polygon_client, start_simulator
from tests.s3_server import S3Server
from tests.tick_codes import in_massive_codes
from tests.workflow_support import (
    copy_of,
    marketpipe_command,
    request_log,
    simulator_process,
    snakemake,
    snakemake_command,
    write_config,
)

pytestmark = pytest.mark.workflow

DAY = dt.date(2024, 1, 3)
SYMBOL = "F"  # the demo market's quietest symbol: a day's quotes in seconds, not minutes
TICK_CONFIG = {
    "symbols": [SYMBOL, "SPY"],
    "start": DAY,
    "end": DAY,
    "news": {"fetch": False},
    "corporate_actions": {"fetch": False},
    "consolidate": False,
    "trades": {"fetch": True, "symbols": [SYMBOL]},
    "quotes": {"fetch": True, "symbols": [SYMBOL]},
}


def to_microseconds(table: pa.Table) -> list[dict[str, object]]:
    """Rows with timestamps cut to microseconds, as alpaca-py's datetimes hold them (the
    lake keeps the vendor's nanoseconds)."""
    index = table.schema.get_field_index("timestamp")
    cut = pc.cast(table["timestamp"], pa.timestamp("us", "UTC"), safe=False)
    return table.set_column(index, "timestamp", cut).to_pylist()


def same_bars(rolled: pa.Table, stored: pa.Table) -> bool:
    """Equal bars; vwap to its 4 decimals, where a sum over prints and the vendor's sum over
    sizes can round a half the other way (one in the last place)."""
    if rolled.drop_columns(["vwap"]).to_pylist() != stored.drop_columns(["vwap"]).to_pylist():
        return False
    gap = pc.max(pc.abs(pc.subtract(rolled["vwap"], stored["vwap"]))).as_py()
    return gap is None or gap <= 0.0001 + 1e-9


@pytest.fixture(scope="module")
def tick_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workflow run keeping F's trades and quotes of one day (bars of F and SPY)."""
    workdir = tmp_path_factory.mktemp("ticks")
    write_config(workdir, **TICK_CONFIG)
    dry = snakemake(workdir, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert f"missing trades: {SYMBOL} {DAY}" in dry.stderr
    assert f"missing quotes: {SYMBOL} {DAY}" in dry.stderr
    assert "missing trades: SPY" not in dry.stderr  # not among trades.symbols
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trades" in result.stdout and "stored this run" in result.stdout
    return workdir


def test_stored_ticks_are_what_alpaca_py_reads_from_the_vendor(tick_lake: Path) -> None:
    from alpaca.data.historical import StockHistoricalDataClient
    from alpaca.data.requests import StockQuotesRequest, StockTradesRequest

    lake = tick_lake / "lake"
    trades = to_microseconds(marketpipe.read_trades(SYMBOL, DAY, DAY, data_dir=lake))
    quotes = to_microseconds(marketpipe.read_quotes(SYMBOL, DAY, DAY, data_dir=lake))
    stored = marketpipe.read_trades(SYMBOL, DAY, DAY, data_dir=lake, columns=["timestamp"])
    assert stored.schema.field("timestamp").type == pa.timestamp("ns", "UTC")
    assert pc.any(pc.not_equal(pc.cast(stored["timestamp"], pa.int64()).to_numpy() % 1000, 0))
    start, end = new_york_days_range(DAY, DAY)
    vendor = start_simulator(seed=0)  # the demo vendor's market
    try:
        client = StockHistoricalDataClient("demo", "demo", url_override=vendor.url)
        their_trades = client.get_stock_trades(
            StockTradesRequest(symbol_or_symbols=SYMBOL, start=start, end=end)
        ).data[SYMBOL]
        their_quotes = client.get_stock_quotes(
            StockQuotesRequest(symbol_or_symbols=SYMBOL, start=start, end=end)
        ).data[SYMBOL]
    finally:
        vendor.stop()
    assert len(trades) > 1000 and len(quotes) > len(trades)
    assert [
        (t.timestamp, t.price, t.size, t.exchange, t.id, t.conditions, t.tape) for t in their_trades
    ] == [
        (
            row["timestamp"],
            row["price"],
            row["size"],
            row["exchange"],
            row["id"],
            row["conditions"],
            row["tape"],
        )
        for row in trades
    ]
    assert [
        (
            q.timestamp,
            q.bid_price,
            q.bid_size,
            q.bid_exchange,
            q.ask_price,
            q.ask_size,
            q.ask_exchange,
            q.conditions,
            q.tape,
        )
        for q in their_quotes
    ] == [
        (
            row["timestamp"],
            row["bid_price"],
            row["bid_size"],
            row["bid_exchange"],
            row["ask_price"],
            row["ask_size"],
            row["ask_exchange"],
            row["conditions"],
            row["tape"],
        )
        for row in quotes
    ]
    with CheckpointStore(lake) as store:
        entries = store.tick_entries()
    assert set(entries) == {("trades", SYMBOL, DAY), ("quotes", SYMBOL, DAY)}
    assert entries[("trades", SYMBOL, DAY)].rows == len(trades)
    footer = pq.read_schema(lake / tick_key("quotes", SYMBOL, DAY)).metadata
    assert footer[b"marketpipe.vendor"] == b"demo" and footer[b"marketpipe.feed"] == b"sip"


def test_a_rerun_asks_nothing_and_verify_checks_the_tick_files(
    tick_lake: Path, tmp_path: Path
) -> None:
    workdir = copy_of(tick_lake, tmp_path)
    before = len(request_log(workdir))
    dry = snakemake(workdir, "-n")
    assert "missing trades" not in dry.stderr and "missing quotes" not in dry.stderr
    rerun = snakemake(workdir, "--cores", "2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(request_log(workdir)) == before
    verify = subprocess.run(
        marketpipe_command("verify"), cwd=workdir, capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 trades/quotes file(s): OK" in verify.stdout


def test_a_damaged_tick_day_is_named_moved_aside_and_fetched_again(
    tick_lake: Path, tmp_path: Path
) -> None:
    workdir = copy_of(tick_lake, tmp_path)
    reference = lake_hashes(tick_lake / "lake")
    key = tick_key("trades", SYMBOL, DAY)
    path = workdir / "lake" / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    verify = subprocess.run(
        marketpipe_command("verify"), cwd=workdir, capture_output=True, text=True, check=False
    )
    assert verify.returncode == 1
    assert f"BAD lake/{key}: content differs from the ledger" in verify.stdout
    dry = snakemake(workdir, "-n")
    assert f"damaged: trades {SYMBOL} {DAY}" in dry.stderr
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert lake_hashes(workdir / "lake") == reference
    assert list((workdir / "lake" / "_damaged").rglob("trades.parquet.reason"))


def test_an_unrecorded_tick_day_is_adopted_without_asking_the_vendor(
    tick_lake: Path, tmp_path: Path
) -> None:
    workdir = copy_of(tick_lake, tmp_path)
    with CheckpointStore(workdir / "lake") as store:  # a crash after the file, before its row
        store.forget_ticks("quotes", SYMBOL, [DAY])
    dry = snakemake(workdir, "-n")
    assert f"missing quotes: {SYMBOL} {DAY}" in dry.stderr
    before = len(request_log(workdir))
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [entry for entry in request_log(workdir)[before:] if "quotes" in entry.path]
    with CheckpointStore(workdir / "lake") as store:
        assert ("quotes", SYMBOL, DAY) in store.tick_entries()


def test_a_crash_while_writing_a_tick_day_resumes_to_the_same_bytes(
    tick_lake: Path, tmp_path: Path
) -> None:
    workdir = copy_of(tick_lake, tmp_path)
    reference = lake_hashes(tick_lake / "lake")
    for kind in ("trades", "quotes"):
        shutil.rmtree(workdir / "lake" / kind)
    result = run_crash_trial(
        command=snakemake_command(workdir, "--cores", "1"),
        workdir=workdir,
        data_dir=workdir / "lake",
        point="parquet_write",
        nth=1,
        reference=reference,
    )
    assert result.crashed and result.passed, result


def test_a_polygon_lake_stores_the_same_prints_in_massives_codes(
    tick_lake: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "POLYGON_API_KEY": "polygon-demo-key"}
    with simulator_process(tmp_path / "requests.jsonl") as url:
        write_config(
            tmp_path,
            **{**TICK_CONFIG, "quotes": {"fetch": False}},
            vendor="polygon",
            polygon={"base_url": url, "requests_per_minute": 10_000},
        )
        result = snakemake(tmp_path, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = marketpipe.read_trades(SYMBOL, DAY, DAY, data_dir=tmp_path / "lake").to_pylist()
    demo = marketpipe.read_trades(SYMBOL, DAY, DAY, data_dir=tick_lake / "lake").to_pylist()
    assert theirs == [in_massive_codes(row) for row in demo]
    # Massive's condition IDs: its odd lots (37) are left out of the bars rolled up here too.
    rolled = marketpipe.read_bars(SYMBOL, DAY, DAY, data_dir=tmp_path / "lake", source="trades")
    stored = marketpipe.read_bars(SYMBOL, DAY, DAY, data_dir=tmp_path / "lake")
    assert rolled.num_rows > 100 and same_bars(rolled, stored)
    footer = pq.read_schema(tmp_path / "lake" / tick_key("trades", SYMBOL, DAY)).metadata
    assert footer[b"marketpipe.vendor"] == b"polygon"


def test_bars_rolled_up_from_the_stored_trades_are_the_vendors_bars(tick_lake: Path) -> None:
    lake = tick_lake / "lake"
    for options in ({}, {"session": "regular", "timeframe": "5Min"}):
        rolled = marketpipe.read_bars(SYMBOL, DAY, DAY, data_dir=lake, source="trades", **options)
        stored = marketpipe.read_bars(SYMBOL, DAY, DAY, data_dir=lake, **options)
        assert rolled.num_rows > 50
        assert same_bars(rolled, stored)
    agree = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "reconcile", "lake", "--from-trades"],
        cwd=tick_lake,
        capture_output=True,
        text=True,
        check=False,
    )
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "lake (trades)" in agree.stdout and "the lakes agree" in agree.stdout


def test_reconcile_names_the_minute_whose_trades_disagree_with_the_bar(
    tick_lake: Path, tmp_path: Path
) -> None:
    workdir = copy_of(tick_lake, tmp_path)
    lake = workdir / "lake"
    trades = marketpipe.read_trades(SYMBOL, DAY, DAY, data_dir=lake)
    regular = [conditions == ["@"] for conditions in trades["conditions"].to_pylist()]
    dropped = regular.index(True)  # a print that counts toward its bar
    fewer = pa.concat_tables([trades.slice(0, dropped), trades.slice(dropped + 1)])
    lake_ticks.write_tick_day(lake, "trades", SYMBOL, DAY, [fewer], {"marketpipe.vendor": "demo"})
    result = subprocess.run(
        [sys.executable, "-m", "marketpipe.cli", "reconcile", "lake", "--from-trades"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"  {SYMBOL} {DAY}: " in result.stdout and "trade_count 1" in result.stdout
    found = reconcile_lakes(lake, b_source="trades").differences.to_pylist()
    minute = pc.floor_temporal(trades["timestamp"][dropped], unit="minute").as_py()
    assert {row["timestamp"] for row in found} == {minute}
    assert {row["kind"] for row in found} >= {"volume", "trade_count"}


def test_plan_costs_the_missing_tick_days_from_the_stored_ones(tick_lake: Path) -> None:
    with CheckpointStore(tick_lake / "lake") as store:
        rows = {kind: entry.rows for (kind, _, _), entry in store.tick_entries().items()}
    planned = subprocess.run(
        marketpipe_command("plan", "--set", "end=2024-01-05"),
        cwd=tick_lake,
        capture_output=True,
        text=True,
        check=False,
    )
    assert planned.returncode == 0, planned.stderr
    expected = 2 * (rows["trades"] + rows["quotes"])
    assert (
        f"2 trades day(s) and 2 quotes day(s) to fetch: about {expected:,} prints" in planned.stdout
    )


def test_an_s3_lake_keeps_the_same_tick_days_and_verifies_them(
    tick_lake: Path, tmp_path: Path, s3_api: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_api.create_bucket()}/lake"
    write_config(tmp_path, **TICK_CONFIG, data_dir=uri)
    env = {**os.environ, **s3_api.environment}
    dry = snakemake(tmp_path, "-n", env=env)
    assert f"missing trades: {SYMBOL} {DAY}" in dry.stderr
    result = snakemake(tmp_path, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    s3_api.point_here(monkeypatch)
    store = S3Store(uri, s3_api.url)
    expected = lake_hashes(tick_lake / "lake")
    ticks = {key: sha for key, sha in expected.items() if key.startswith(("trades/", "quotes/"))}
    assert ticks and {key: lake_hashes(store)[key] for key in ticks} == ticks
    again = snakemake(tmp_path, "-n", env=env)
    assert "missing trades" not in again.stderr and "missing quotes" not in again.stderr
    verify = subprocess.run(
        marketpipe_command("verify"), cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 trades/quotes file(s): OK" in verify.stdout


def test_a_renamed_securitys_ticks_come_from_massive_under_the_ticker_it_used(
    tmp_path: Path,
) -> None:
    # Dayforce traded as CDAY until 2024-01-31 (the demo market's rename): Massive serves
    # tickers as traded, so that day's prints are asked for under CDAY and stored as DAY's,
    # and the next day's under DAY.
    day, renamed = dt.date(2024, 1, 31), dt.date(2024, 2, 1)
    env = {**os.environ, "POLYGON_API_KEY": "polygon-demo-key"}
    book = tmp_path / "securities.yaml"
    book.write_text(yaml.safe_dump(list(DEMO_SECURITIES)))
    with simulator_process(tmp_path / "requests.jsonl", "--securities", str(book)) as url:
        write_config(
            tmp_path,
            symbols=["DAY"],
            start=day,
            end=renamed,
            news={"fetch": False},
            corporate_actions={"fetch": False},
            trades={"fetch": True},
            vendor="polygon",
            polygon={"base_url": url, "requests_per_minute": 10_000},
        )
        result = snakemake(tmp_path, "--cores", "2", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        with polygon_client(RemoteSimulator(url), client_class=PolygonTradesClient) as client:
            start, end = new_york_days_range(day, day)
            query = TicksQuery(symbols=("CDAY",), start=start, end=end)
            theirs = pa.concat_tables(list(client.fetch_batch(query)))
    stored = marketpipe.read_trades("DAY", day, day, data_dir=tmp_path / "lake")
    assert theirs.num_rows > 1000 and stored.num_rows == theirs.num_rows
    assert set(stored["symbol"].to_pylist()) == {"DAY"}
    assert stored.drop_columns(["symbol"]).equals(theirs.drop_columns(["symbol"]))
    asked = {entry.path for entry in read_request_log(tmp_path / "requests.jsonl")}
    assert {path for path in asked if path.startswith("/v3/trades/")} == {
        "/v3/trades/CDAY",
        "/v3/trades/DAY",
    }
    after = marketpipe.read_trades("DAY", renamed, renamed, data_dir=tmp_path / "lake")
    assert after.num_rows > 1000 and set(after["symbol"].to_pylist()) == {"DAY"}
