"""Ingest: missing days only, each day published when complete, checkpoints kept honest."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from marketpipe.connectors import AlpacaClient, BarsQuery, UnknownSymbolError
from marketpipe.ingest.bars import StreamSettings, SymbolsFailed, ingest_days
from marketpipe.lake.ledger import CheckpointStore, LakeSettingsMismatch, state_path
from marketpipe.lake.storage import file_sha256, partition_path, quarantine_path
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import FaultConfig, SimulatorServer
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.run import recover_interrupted_jobs
from tests.conftest import alpaca_client, start_simulator

STREAM = StreamSettings("demo", Timeframe.parse("1Min"), "sip", "raw")


def _days(start: str, end: str) -> list[dt.date]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [session.date for session in trading_sessions(first, last)]


def _ingest(server: SimulatorServer, data_dir: Path, symbol: str, days: list[dt.date], **kw):
    with alpaca_client(server, **kw) as client, CheckpointStore(data_dir) as store:
        return ingest_days(client, store, data_dir, [symbol], days, STREAM)


def _new_york_times(path: Path) -> list[dt.datetime]:
    return [t.astimezone(NEW_YORK) for t in pq.read_table(path)["timestamp"].to_pylist()]


def test_each_trading_day_becomes_one_partition(simulator: SimulatorServer, tmp_path: Path) -> None:
    days = _days("2024-03-06", "2024-03-13")  # DST starts on Sunday 2024-03-10
    report = _ingest(simulator, tmp_path, "AAPL", days)
    assert report.missing_days == len(days) == 6
    assert report.requests == 1
    for day in days:
        times = _new_york_times(partition_path(tmp_path, "AAPL", day))
        assert {t.date() for t in times} == {day}
        assert dt.time(4, 0) <= times[0].time() and times[-1].time() < dt.time(20, 0)
    dataset = ds.dataset(tmp_path / "ohlcv", partitioning="hive", format="parquet")
    table = dataset.to_table()
    assert table.num_rows == sum(entry.rows for entry in report.published)
    assert sorted(set(pc.unique(table["day"]).to_pylist())) == [6, 7, 8, 11, 12, 13]


def test_a_partition_carries_exactly_the_documented_metadata(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    # The keys are part of the lake's format (readers and reindex rely on them): a rename
    # in the code must not change the bytes the lake holds.
    day = dt.date(2024, 3, 6)
    _ingest(simulator, tmp_path, "AAPL", [day])
    metadata = pq.read_schema(partition_path(tmp_path, "AAPL", day)).metadata
    assert {key: value for key, value in metadata.items() if key != b"ARROW:schema"} == {
        b"marketpipe.vendor": b"demo",
        b"marketpipe.timeframe": b"1Min",
        b"marketpipe.feed": b"sip",
        b"marketpipe.adjustment": b"raw",
        b"marketpipe.symbol": b"AAPL",
        b"marketpipe.day": b"2024-03-06",
        b"marketpipe.dataset": b"ohlcv",
    }


def test_early_close_and_holiday(simulator: SimulatorServer, tmp_path: Path) -> None:
    days = _days("2024-11-27", "2024-12-02")
    assert dt.date(2024, 11, 28) not in days
    _ingest(simulator, tmp_path, "SPY", days)
    early = _new_york_times(partition_path(tmp_path, "SPY", dt.date(2024, 11, 29)))
    assert early[-1].time() < dt.time(17, 0)
    assert not partition_path(tmp_path, "SPY", dt.date(2024, 11, 28)).exists()


def test_days_without_bars_become_known_empty_partitions(tmp_path: Path) -> None:
    server = start_simulator(listings={"NEWCO": dt.date(2024, 1, 5)})
    try:
        days = _days("2024-01-02", "2024-01-08")
        report = _ingest(server, tmp_path, "NEWCO", days)
        second = _ingest(server, tmp_path, "NEWCO", days)
    finally:
        server.stop()
    empty = pq.read_table(partition_path(tmp_path, "NEWCO", dt.date(2024, 1, 3)))
    assert empty.num_rows == 0 and empty.schema.names[:2] == ["timestamp", "open"]
    assert empty.schema.metadata[b"marketpipe.symbol"] == b"NEWCO"
    with CheckpointStore(tmp_path) as store:
        ledger = store.ledger("NEWCO")
    assert [ledger[day].known_empty for day in days] == [True, True, True, False, False]
    assert second.requests == 0 and second.missing_days == 0
    assert report.requests == 1


def test_only_missing_days_are_fetched_in_runs(simulator: SimulatorServer, tmp_path: Path) -> None:
    days = _days("2024-01-02", "2024-01-31")
    _ingest(simulator, tmp_path, "MSFT", days)
    before = {day: file_sha256(partition_path(tmp_path, "MSFT", day)) for day in days}
    for day in (days[3], days[4], days[12]):
        partition_path(tmp_path, "MSFT", day).unlink()
    simulator.request_log.clear()
    report = _ingest(simulator, tmp_path, "MSFT", days)
    assert report.missing_days == 3 and report.requests == 2
    starts = sorted(entry.params["start"][:10] for entry in simulator.request_log.entries)
    assert starts == [days[3].isoformat(), days[12].isoformat()]
    after = {day: file_sha256(partition_path(tmp_path, "MSFT", day)) for day in days}
    assert after == before


def test_ledger_is_reconciled_with_the_files(simulator: SimulatorServer, tmp_path: Path) -> None:
    days = _days("2024-01-02", "2024-01-05")
    _ingest(simulator, tmp_path, "AAPL", days)
    with CheckpointStore(tmp_path) as store:
        store.forget("AAPL", [days[0]])  # a crash between publishing and recording
    stale = partition_path(tmp_path, "AAPL", days[1]).with_name(".bars.parquet.1.2.tmp")
    stale.write_bytes(b"partial")
    report = _ingest(simulator, tmp_path, "AAPL", days)
    assert report.requests == 0
    assert not stale.exists()
    with CheckpointStore(tmp_path) as store:
        ledger = store.ledger("AAPL")
        assert ledger[days[0]].sha256 == file_sha256(partition_path(tmp_path, "AAPL", days[0]))
        assert store.last_bar_time(STREAM.key("AAPL")).astimezone(NEW_YORK).date() == days[-1]
        assert store.integrity_check() == "ok"


def test_flagged_bars_are_counted_in_the_ledger_and_survive_adoption(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    days = _days("2024-01-02", "2024-01-12")
    report = _ingest(simulator, tmp_path, "AAPL", days)
    lake = ds.dataset(tmp_path / "ohlcv", partitioning="hive").to_table()
    outside = pc.or_(
        pc.greater(pc.max_element_wise(lake["open"], lake["close"]), lake["high"]),
        pc.less(pc.min_element_wise(lake["open"], lake["close"]), lake["low"]),
    )
    assert report.flagged_rows == pc.sum(outside).as_py() > 0
    assert report.rejected_rows == 0
    with CheckpointStore(tmp_path) as store:
        before = store.ledger("AAPL")
        store.forget("AAPL", days)  # files without ledger rows are adopted, flags included
    _ingest(simulator, tmp_path, "AAPL", days)
    with CheckpointStore(tmp_path) as store:
        after = store.ledger("AAPL")
    assert {d: e.flagged_rows for d, e in after.items()} == {
        d: e.flagged_rows for d, e in before.items()
    }


def test_a_ledger_from_before_flagged_rows_is_migrated(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE partitions (symbol TEXT NOT NULL, day TEXT NOT NULL, rows INTEGER "
            "NOT NULL, sha256 TEXT NOT NULL, known_empty INTEGER NOT NULL, rejected_rows "
            "INTEGER NOT NULL, requests INTEGER NOT NULL, published_at REAL NOT NULL, "
            "PRIMARY KEY (symbol, day))"
        )
        old.execute("INSERT INTO partitions VALUES ('AAPL', '2024-01-02', 5, 'ab', 0, 1, 2, 0)")
    old.close()
    with CheckpointStore(tmp_path) as store:
        (entry,) = store.ledger("AAPL").values()
        assert (entry.rows, entry.rejected_rows, entry.flagged_rows) == (5, 1, 0)
        assert store.integrity_check() == "ok"


def test_malformed_bars_go_to_quarantine_never_the_lake(tmp_path: Path) -> None:
    bad = {
        "high_below_low": 0.01,
        "negative_volume": 0.01,
        "nan": 0.01,
        "duplicate": 0.01,
        "out_of_order": 0.01,
    }
    server = start_simulator(bad_bars=bad)
    try:
        days = _days("2024-01-02", "2024-01-05")
        report = _ingest(server, tmp_path, "AAPL", days)
    finally:
        server.stop()
    assert report.rejected_rows > 0
    reasons = set()
    for day in days:
        path = quarantine_path(tmp_path, "AAPL", day)
        if path.exists():
            reasons |= set(pq.read_table(path)["reason"].to_pylist())
        lake = pq.read_table(partition_path(tmp_path, "AAPL", day))
        assert pc.all(pc.greater_equal(lake["high"], lake["low"])).as_py()
        assert pc.all(pc.greater_equal(lake["volume"], 0)).as_py()
        assert pc.all(pc.is_finite(lake["close"])).as_py()
        stamps = lake["timestamp"].to_pylist()
        assert stamps == sorted(set(stamps))
    assert {
        "high below low",
        "negative volume",
        "close not a positive number",
        "duplicate timestamp",
    } <= reasons


def test_a_lake_never_mixes_settings(simulator: SimulatorServer, tmp_path: Path) -> None:
    days = _days("2024-01-02", "2024-01-02")
    _ingest(simulator, tmp_path, "AAPL", days)
    with CheckpointStore(tmp_path) as store:
        store.claim_settings({"feed": "sip"})
        with pytest.raises(LakeSettingsMismatch, match="feed is 'sip' there but 'iex' now"):
            store.claim_settings({"feed": "iex"})


def test_an_unknown_symbol_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    server = start_simulator(unknown_symbols=frozenset({"ZZZZ"}))
    try:
        with pytest.raises(SymbolsFailed, match="ZZZZ: the vendor does not know ZZZZ") as failed:
            _ingest(server, tmp_path, "ZZZZ", _days("2024-01-02", "2024-01-05"))
        assert isinstance(failed.value.errors["ZZZZ"], UnknownSymbolError)
        paths = [entry.path for entry in server.request_log.entries]
    finally:
        server.stop()
    assert not list(tmp_path.rglob("bars.parquet"))
    assert paths == ["/v2/stocks/bars", "/v2/stocks/bars/latest"]


def test_a_symbol_listed_later_is_known_and_its_days_known_empty(tmp_path: Path) -> None:
    server = start_simulator(listings={"NEWCO": dt.date(2024, 3, 1)})
    try:
        days = _days("2024-01-02", "2024-01-05")
        report = _ingest(server, tmp_path, "NEWCO", days)
    finally:
        server.stop()
    assert [entry.known_empty for entry in report.published] == [True] * len(days)


def _lake(data_dir: Path) -> dict[str, str]:
    return {
        path.relative_to(data_dir).as_posix(): file_sha256(path)
        for path in sorted(data_dir.rglob("*.parquet"))
    }


def test_symbols_missing_the_same_days_share_pages(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """Packed: the page limit counts bars across symbols, so only the last page is partial;
    the partitions are byte-identical to fetching each symbol alone."""
    days = _days("2024-01-02", "2024-01-05")
    symbols = ["SPY", "AAPL", "MSFT"]
    with alpaca_client(simulator, page_size=1000) as client, CheckpointStore(tmp_path) as store:
        report = ingest_days(client, store, tmp_path, symbols, days, STREAM)
    bars = sum(entry.rows for entry in report.published)
    assert report.requests == len(simulator.request_log.entries) == -(-bars // 1000)
    assert {entry.symbols for entry in simulator.request_log.entries} == {("AAPL", "MSFT", "SPY")}
    with CheckpointStore(tmp_path) as store:
        assert sum(entry.requests for entry in store.all_entries()) == report.requests
    alone = tmp_path / "alone"
    for symbol in symbols:
        _ingest(simulator, alone, symbol, days, page_size=1000)
    assert _lake(alone) == {
        name: digest for name, digest in _lake(tmp_path).items() if name.startswith("ohlcv")
    }


def test_a_failing_symbol_in_a_shared_stream_fails_alone(tmp_path: Path) -> None:
    server = start_simulator(faults=FaultConfig(fail_symbols={"MSFT": 500}))
    days = _days("2024-01-02", "2024-01-03")
    try:
        with (
            alpaca_client(server, max_attempts=1) as client,
            CheckpointStore(tmp_path) as store,
            pytest.raises(SymbolsFailed, match=r"MSFT: .*HTTP 500") as failed,
        ):
            ingest_days(client, store, tmp_path, ["AAPL", "MSFT", "SPY"], days, STREAM)
        requested = [entry.symbols for entry in server.request_log.entries]
    finally:
        server.stop()
    assert list(failed.value.errors) == ["MSFT"]
    assert requested == [("AAPL", "MSFT", "SPY"), ("AAPL",), ("MSFT",), ("SPY",)]
    for symbol, expected in (("AAPL", True), ("MSFT", False), ("SPY", True)):
        assert all(partition_path(tmp_path, symbol, day).exists() == expected for day in days)


def test_when_the_vendor_fails_for_everyone_the_split_gives_up_early(tmp_path: Path) -> None:
    failing = {symbol: 503 for symbol in ("AAA", "BBB", "CCC", "DDD")}
    server = start_simulator(faults=FaultConfig(fail_symbols=failing))
    try:
        with (
            alpaca_client(server, max_attempts=1) as client,
            CheckpointStore(tmp_path) as store,
            pytest.raises(SymbolsFailed) as failed,
        ):
            ingest_days(
                client, store, tmp_path, list(failing), _days("2024-01-02", "2024-01-02"), STREAM
            )
        requests = len(server.request_log.entries)
    finally:
        server.stop()
    assert requests == 3  # the shared stream, then AAA and BBB alone
    assert "the vendor failed for the symbols before it" in str(failed.value.errors["DDD"])


def test_an_unknown_symbol_in_a_shared_stream_writes_nothing_for_it(tmp_path: Path) -> None:
    server = start_simulator(unknown_symbols=frozenset({"ZZZZ"}))
    days = _days("2024-01-02", "2024-01-03")
    try:
        with (
            alpaca_client(server) as client,
            CheckpointStore(tmp_path) as store,
            pytest.raises(SymbolsFailed, match="ZZZZ: the vendor does not know ZZZZ"),
        ):
            ingest_days(client, store, tmp_path, ["AAPL", "ZZZZ"], days, STREAM)
    finally:
        server.stop()
    assert all(partition_path(tmp_path, "AAPL", day).exists() for day in days)
    assert not list(tmp_path.glob("ohlcv/symbol=ZZZZ"))


def test_a_run_after_a_crash_reconciles_the_interrupted_jobs(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    """A file published just before a kill, with no ledger row, in a month that now looks
    complete on disk: no job will touch it again, so the next run's start adopts it."""
    days = _days("2024-01-02", "2024-01-03")
    _ingest(simulator, tmp_path, "AAPL", days)
    with CheckpointStore(tmp_path) as store:
        store.forget("AAPL", [days[-1]])
        store.open_job("run-1/AAPL", ["AAPL"], days)
    settings = load_settings(
        {"symbols": ["AAPL"], "start": "2024-01-02", "end": "2024-01-03", "data_dir": str(tmp_path)}
    )
    assert recover_interrupted_jobs(settings) == 1
    with CheckpointStore(tmp_path) as store:
        assert store.open_jobs() == {}
        entry = store.ledger("AAPL")[days[-1]]
    assert entry.sha256 == file_sha256(partition_path(tmp_path, "AAPL", days[-1]))
    assert recover_interrupted_jobs(settings) == 0


class _PagesOutOfSymbolOrder:
    """A vendor whose pages do not follow the symbol order they promise."""

    def __init__(self, real: AlpacaClient) -> None:
        self.real = real
        self.queries: list[tuple[str, ...]] = []

    def fetch_batch(self, query: BarsQuery) -> Iterator[pa.Table]:
        """Each symbol's bars in time order, but the last symbol's first."""
        self.queries.append(query.symbols)
        table = pa.concat_tables(self.real.fetch_batch(query))
        if len(query.symbols) > 1:
            last = pc.equal(table["symbol"], query.symbols[-1])
            table = pa.concat_tables([table.filter(last), table.filter(pc.invert(last))])
        yield from (pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=500))

    def unknown_symbols(self, symbols: tuple[str, ...], query: BarsQuery) -> set[str]:
        return self.real.unknown_symbols(symbols, query)

    def expects_bars(self, symbol: str, day: dt.date) -> bool:
        return self.real.expects_bars(symbol, day)


def test_pages_out_of_symbol_order_are_refetched_not_patched(
    simulator: SimulatorServer, tmp_path: Path
) -> None:
    days = _days("2024-01-02", "2024-01-03")
    with alpaca_client(simulator, page_size=500) as real, CheckpointStore(tmp_path) as store:
        vendor = _PagesOutOfSymbolOrder(real)
        ingest_days(vendor, store, tmp_path, ["AAPL", "MSFT"], days, STREAM)  # type: ignore[arg-type]
    assert vendor.queries == [("AAPL", "MSFT"), ("AAPL",), ("MSFT",)]
    alone = tmp_path / "alone"
    for symbol in ("AAPL", "MSFT"):
        _ingest(simulator, alone, symbol, days)
    assert _lake(alone) == {
        name: digest for name, digest in _lake(tmp_path).items() if name.startswith("ohlcv")
    }
    assert not list(tmp_path.glob("quarantine/**/*.parquet"))
