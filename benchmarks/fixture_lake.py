"""Write a lake's partition files quickly, without fetching: empty ones (planning) or
real-sized ones with their ledger rows (reading)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.lake.storage import LAKE_SCHEMA, parquet_bytes, partition_path
from marketpipe.markettime.calendar import trading_sessions


def symbols(count: int) -> list[str]:
    """``count`` synthetic tickers S000, S001, ..."""
    return [f"S{index:03d}" for index in range(count)]


def write_fixture_lake(
    data_dir: Path, tickers: list[str], start: dt.date, end: dt.date, *, settled: bool = False
) -> int:
    """One small valid partition file per symbol and session; returns how many were written.
    ``settled``: also record them in the ledger and build the month files of the whole
    months, as a lake updated every day holds them."""
    data = parquet_bytes(pa.Table.from_pylist([], schema=LAKE_SCHEMA), {})
    written = []
    for session in trading_sessions(start, end):
        for ticker in tickers:
            path = partition_path(data_dir, ticker, session.date)
            os.makedirs(path.parent, exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
            written.append((ticker, session.date))
    if settled:
        from marketpipe.lake.consolidated import consolidate
        from marketpipe.lake.ledger import CheckpointStore, LedgerEntry
        from marketpipe.lake.objects import LocalStore

        sha = hashlib.sha256(data).hexdigest()
        with CheckpointStore(data_dir) as store:
            store.publish_many(
                [
                    (LedgerEntry(ticker, day, 0, sha, True, 0, 0), None, None)
                    for ticker, day in written
                ]
            )
            consolidate(LocalStore(data_dir), store)
    return len(written)


def _template_day(seed: int = 0) -> pa.Table:
    """One extended session of synthetic minute bars (04:00-20:00 New York): the rows every
    day of the real-sized fixture repeats, shifted to its session and scaled per symbol."""
    from marketpipe.connectors.alpaca import bars_table
    from marketpipe.markettime.timeframe import Timeframe
    from marketpipe.simulator import SyntheticMarket

    session = trading_sessions(dt.date(2024, 3, 5), dt.date(2024, 3, 5))[0]
    bars = SyntheticMarket(seed=seed).bars("TMPL", session, "sip", Timeframe.parse("1Min"))
    rows = [
        {
            "t": dt.datetime.fromtimestamp(b.t, dt.UTC).isoformat().replace("+00:00", "Z"),
            "o": b.o,
            "h": b.h,
            "l": b.l,
            "c": b.c,
            "v": b.v,
            "n": b.n,
            "vw": b.vw,
        }
        for b in bars
    ]
    table = bars_table([("TMPL", rows)], "fixture")
    start = session.extended_window("sip")[0]
    offsets = pc.subtract(pc.cast(table["timestamp"], pa.int64()), int(start.timestamp()) * 10**9)
    table = table.drop_columns(["symbol"])
    return table.set_column(table.column_names.index("timestamp"), "timestamp", offsets)


def _write_symbol(args: tuple[Path, str, int, dt.date, dt.date]) -> list[tuple]:
    """Write one symbol's day files and its one-file copy; its ledger rows."""
    data_dir, ticker, index, start, end = args
    template = _template_day()
    scale = 0.5 + index / 50
    parts, entries = [], []
    for session in trading_sessions(start, end):
        base = int(session.extended_window("sip")[0].timestamp()) * 10**9
        stamps = pc.cast(pc.add(template["timestamp"], base), pa.timestamp("ns", tz="UTC"))
        columns = {
            name: (stamps if name == "timestamp" else template[name]) for name in LAKE_SCHEMA.names
        }
        for name in ("open", "high", "low", "close", "vwap"):
            columns[name] = pc.multiply(template[name], scale)
        table = pa.table(columns).cast(LAKE_SCHEMA)
        metadata = {"marketpipe.symbol": ticker, "marketpipe.day": session.date.isoformat()}
        data = parquet_bytes(table, metadata)
        path = partition_path(data_dir, ticker, session.date)
        os.makedirs(path.parent, exist_ok=True)
        path.write_bytes(data)
        parts.append(table)
        entries.append((ticker, session.date, table.num_rows, hashlib.sha256(data).hexdigest()))
    whole = pa.concat_tables(parts)
    one = data_dir.parent / "one_file_per_symbol" / f"{ticker}.parquet"
    one.parent.mkdir(parents=True, exist_ok=True)
    one.write_bytes(parquet_bytes(whole, {"marketpipe.symbol": ticker}))
    return entries


def write_real_lake(
    data_dir: Path, tickers: list[str], start: dt.date, end: dt.date, workers: int = 2
) -> int:
    """Real-sized day files (a full extended session of minute bars each) for every symbol
    and session, recorded in the lake's ledger as a run would, plus the same rows as one
    file per symbol in ``<data_dir>/../one_file_per_symbol/`` (the baseline). Returns rows."""
    from marketpipe.lake.ledger import CheckpointStore, LedgerEntry

    jobs = [(data_dir, ticker, index, start, end) for index, ticker in enumerate(tickers)]
    rows = 0
    with (
        concurrent.futures.ProcessPoolExecutor(workers) as pool,
        CheckpointStore(data_dir) as store,
    ):
        for entries in pool.map(_write_symbol, jobs):
            store.publish_many(
                [
                    (LedgerEntry(symbol, day, count, sha, count == 0, 0, 0), None, None)
                    for symbol, day, count, sha in entries
                ]
            )
            rows += sum(count for _, _, count, _ in entries)
    return rows
