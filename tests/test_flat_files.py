"""Massive flat files: the simulator publishes its truth to moto's S3 server, MarketPipe
splits each day's file into the universe's partitions, and the result equals REST's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from marketpipe.commands.plan import build_plan
from marketpipe.connectors import AuthenticationError, ResponseFormatError
from marketpipe.connectors.flat_files import FlatFilesClient, FlatFilesConfig
from marketpipe.connectors.models import TradedAs
from marketpipe.ingest.bars import KnownSecurity, StreamSettings, SymbolsFailed, ingest_days
from marketpipe.ingest.flat_files import ingest_flat_files
from marketpipe.lake.compare import reconcile_lakes
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import partition_path
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.simulator import SimulatorServer
from marketpipe.simulator.flat_files import FLAT_FILE_HEADER, publish_flat_files
from marketpipe.simulator.settings import DEMO_SECURITIES
from marketpipe.workflow.config import ConfigError
from marketpipe.workflow.config_loading import load_settings
from tests.conftest import polygon_client, start_simulator
from tests.s3_server import AWS_ENVIRONMENT, S3Server
from tests.workflow_support import marketpipe_command, snakemake, write_config

STREAM = StreamSettings("polygon", Timeframe.parse("1Min"), "sip", "raw")
PREFIX = "us_stocks_sip/minute_aggs_v1"
DAYS = [session.date for session in trading_sessions(dt.date(2024, 3, 4), dt.date(2024, 3, 8))]
UNIVERSE = ["AAPL", "MSFT"]
# The file holds the whole market: far more tickers than the universe asks for.
MARKET = [*UNIVERSE, "SPY", "QQQ", "IBM", "XOM", "NVDA"]
# The morning after the last session, before its file is published (ready at 11:00).
BEFORE_LAST_FILE = dt.datetime(2024, 3, 9, 9, 0, tzinfo=NEW_YORK).astimezone(dt.UTC)


@dataclass
class Vendor:
    """A simulator, a bucket of its flat files on moto, and a client for each."""

    server: SimulatorServer
    s3: S3Server
    bucket: str

    def files(self, **config: Any) -> FlatFilesClient:
        config.setdefault("access_key_id", SecretStr(AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"]))
        config.setdefault("secret_access_key", SecretStr(AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"]))
        return FlatFilesClient(
            FlatFilesConfig(endpoint_url=self.s3.url, bucket=self.bucket, **config),
            sleep=lambda _: None,
        )

    def publish(self, now: dt.datetime) -> list[str]:
        return publish_flat_files(
            self.s3.client(), self.bucket, PREFIX, self.server.app.polygon, DAYS, MARKET, now
        )


@pytest.fixture
def vendor(s3_api: S3Server) -> Iterator[Vendor]:
    server = start_simulator(market_now=BEFORE_LAST_FILE)
    try:
        yield Vendor(server, s3_api, s3_api.create_bucket())
    finally:
        server.stop()
        s3_api.refuse_with = s3_api.cut_short = None


def _gets(vendor: Vendor) -> list[int]:
    """The statuses of the reads of this test's flat files, in order."""
    return [
        request.status
        for request in vendor.s3.requests
        if request.method == "GET" and request.path.startswith(f"/{vendor.bucket}/")
    ]


def _flat_lake(vendor: Vendor, data_dir: Path, symbols: list[str] = UNIVERSE) -> Any:
    with (
        vendor.files() as files,
        polygon_client(vendor.server) as rest,
        CheckpointStore(data_dir) as store,
    ):
        return ingest_flat_files(
            files, rest, store, data_dir, symbols, DAYS, STREAM, now=BEFORE_LAST_FILE
        )


def test_each_day_file_is_read_once_and_equals_what_rest_serves(
    vendor: Vendor, tmp_path: Path
) -> None:
    published = vendor.publish(BEFORE_LAST_FILE)
    assert len(published) == len(DAYS) - 1  # the last session's file is not ready yet
    report = _flat_lake(vendor, tmp_path / "flat")
    # One GET per day for both symbols; the last day's answered 404 and came from REST.
    assert _gets(vendor) == [200] * (len(DAYS) - 1) + [404]
    assert report.files_read == len(DAYS) - 1
    assert report.requests == len(UNIVERSE)  # one aggregates page each, for the last day
    with polygon_client(vendor.server) as rest, CheckpointStore(tmp_path / "rest") as store:
        ingest_days(rest, store, tmp_path / "rest", UNIVERSE, DAYS, STREAM, now=BEFORE_LAST_FILE)
    compared = reconcile_lakes(tmp_path / "flat", tmp_path / "rest")
    assert compared.agree, compared.differences.to_pylist()[:5]
    assert compared.summary.num_rows == len(UNIVERSE) * len(DAYS)
    with CheckpointStore(tmp_path / "flat") as store:
        sources = store.partition_sources(DAYS[0], DAYS[-1])
    assert {day for _, day in sources} == set(DAYS[:-1])  # the REST day has no file version
    assert not (tmp_path / "flat" / "ohlcv" / "symbol=SPY").exists()


def test_a_rerun_reads_only_the_days_still_missing(vendor: Vendor, tmp_path: Path) -> None:
    vendor.publish(BEFORE_LAST_FILE)
    _flat_lake(vendor, tmp_path, ["AAPL"])
    before = partition_path(tmp_path, "AAPL", DAYS[0]).read_bytes()
    gets = len(_gets(vendor))
    report = _flat_lake(vendor, tmp_path, ["AAPL", "MSFT"])
    # MSFT misses every day: each file is read again, AAPL's partitions are not touched.
    assert _gets(vendor)[gets:] == [200] * (len(DAYS) - 1) + [404]
    assert partition_path(tmp_path, "AAPL", DAYS[0]).read_bytes() == before
    assert {entry.symbol for entry in report.published} == {"MSFT"}


def test_a_symbol_no_file_and_no_reference_knows_is_refused_by_name(
    vendor: Vendor, tmp_path: Path
) -> None:
    vendor.server.stop()
    vendor.server = start_simulator(
        market_now=BEFORE_LAST_FILE, unknown_symbols=frozenset({"ZZZZ"})
    )
    vendor.publish(BEFORE_LAST_FILE)
    with pytest.raises(SymbolsFailed, match="the vendor does not know ZZZZ") as failed:
        _flat_lake(vendor, tmp_path, ["AAPL", "ZZZZ"])
    assert list(failed.value.errors) == ["ZZZZ"]
    assert partition_path(tmp_path, "AAPL", DAYS[0]).exists()
    assert not (tmp_path / "ohlcv" / "symbol=ZZZZ").exists()


def test_a_file_without_a_column_is_refused_naming_the_file_and_column(
    vendor: Vendor, tmp_path: Path
) -> None:
    key = f"{PREFIX}/2024/03/2024-03-04.csv.gz"
    header = FLAT_FILE_HEADER.replace(",transactions", "")
    body = gzip.compress(f"{header}\nAAPL,100,1.0,1.0,1.0,1.0,1709560800000000000\n".encode())
    vendor.s3.client().put_object(Bucket=vendor.bucket, Key=key, Body=body)
    with vendor.files() as files, pytest.raises(ResponseFormatError) as refused:
        files.read_day(DAYS[0], ["AAPL"])
    assert key in str(refused.value) and "transactions" in str(refused.value)


def test_a_read_cut_short_is_read_again_and_never_half_published(
    vendor: Vendor, tmp_path: Path
) -> None:
    vendor.publish(BEFORE_LAST_FILE)
    cut = []

    def first_read_of_each_file(request: Any) -> bool:
        if request.method != "GET" or request.path in cut:
            return False
        cut.append(request.path)
        return True

    vendor.s3.cut_short = first_read_of_each_file
    _flat_lake(vendor, tmp_path / "flat", ["AAPL"])
    assert len(cut) == len(DAYS)  # every file's first read broke off (the 404 too)
    vendor.s3.cut_short = None
    _flat_lake(vendor, tmp_path / "again", ["AAPL"])
    assert reconcile_lakes(tmp_path / "flat", tmp_path / "again").agree


def test_refused_keys_name_the_flat_files_variables_and_never_the_secret(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor.publish(BEFORE_LAST_FILE)
    monkeypatch.setenv("POLYGON_S3_ACCESS_KEY_ID", "AKIAFLATFILES")
    monkeypatch.setenv("POLYGON_S3_SECRET_ACCESS_KEY", "flat-secret-value")
    config = FlatFilesConfig(endpoint_url=vendor.s3.url, bucket=vendor.bucket)
    assert config.access_key_id.get_secret_value() == "AKIAFLATFILES"
    assert "flat-secret-value" not in repr(config)
    # moto accepts any key: a refusal is what the real endpoint answers a wrong one with.
    vendor.s3.refuse_with = lambda request: "InvalidAccessKeyId"
    with FlatFilesClient(config) as files, pytest.raises(AuthenticationError) as refused:
        files.read_day(DAYS[0], ["AAPL"])
    message = str(refused.value)
    assert "POLYGON_S3_ACCESS_KEY_ID" in message and "flat-secret-value" not in message


def test_missing_keys_name_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*FlatFilesConfig.ENV_ACCESS_KEY_ID, *FlatFilesConfig.ENV_SECRET_ACCESS_KEY):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(
        ValueError, match=r"POLYGON_S3_ACCESS_KEY_ID environment variable \(or MASSIVE_S3_"
    ):
        FlatFilesConfig()


# The Monday after, when every file of the week is out (and its corrections are made).
WEEK_LATER = dt.datetime(2024, 3, 11, 12, 0, tzinfo=NEW_YORK).astimezone(dt.UTC)


def _corrected(body: bytes, ticker: str) -> bytes:
    """``body`` with ``ticker``'s first bar's close moved a cent (a vendor's correction)."""
    lines = gzip.decompress(body).decode().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{ticker},"))
    fields = lines[index].split(",")
    fields[3] = repr(round(float(fields[3]) + 0.01, 2))
    fields[4] = repr(max(float(fields[4]), float(fields[3])))
    lines[index] = ",".join(fields)
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


@pytest.mark.workflow
def test_a_flat_file_backfill_runs_the_workflow_and_refresh_takes_replaced_files(
    vendor: Vendor, tmp_path: Path
) -> None:
    vendor.publish(BEFORE_LAST_FILE)
    workdir = tmp_path / "flat"
    write_config(
        workdir,
        vendor="polygon",
        symbols=UNIVERSE,
        start=DAYS[0],
        end=DAYS[-1],
        # Bars only: counted below (a dividend's reference close would be one more
        # aggregates request) and compared with a lake of REST bars.
        corporate_actions={"fetch": False},
        news={"fetch": False},
        polygon={
            "base_url": vendor.server.url,
            "requests_per_minute": 10_000,
            "flat_files": True,
            "flat_files_endpoint": vendor.s3.url,
            "flat_files_bucket": vendor.bucket,
        },
    )
    env = {
        **os.environ,
        "POLYGON_API_KEY": "polygon-demo-key",
        "POLYGON_S3_ACCESS_KEY_ID": AWS_ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        "POLYGON_S3_SECRET_ACCESS_KEY": AWS_ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        "MARKETPIPE_NOW": BEFORE_LAST_FILE.isoformat(),
    }
    result = snakemake(workdir, "--cores", "2", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    # Both symbols share one job: each published file was read once, the last day from REST.
    assert _gets(vendor) == [200] * (len(DAYS) - 1) + [404]
    aggregates = [
        entry for entry in vendor.server.request_log.entries if entry.path.startswith("/v2/aggs")
    ]
    assert len(aggregates) == len(UNIVERSE)
    rest_lake = tmp_path / "rest"
    with polygon_client(vendor.server) as rest, CheckpointStore(rest_lake) as store:
        ingest_days(rest, store, rest_lake, UNIVERSE, DAYS, STREAM, now=BEFORE_LAST_FILE)
    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "marketpipe.cli",
            "reconcile",
            str(workdir / "lake"),
            str(rest_lake),
        ],
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr

    # The vendor corrects Tuesday's file and publishes Friday's; a week later, refresh
    # reads those two files again (HEAD for the rest) and replaces what changed.
    boto = vendor.s3.client()
    key = f"{PREFIX}/2024/03/2024-03-05.csv.gz"
    original = boto.get_object(Bucket=vendor.bucket, Key=key)["Body"].read()
    boto.put_object(Bucket=vendor.bucket, Key=key, Body=_corrected(original, "AAPL"))
    publish_flat_files(
        boto, vendor.bucket, PREFIX, vendor.server.app.polygon, DAYS[-1:], MARKET, WEEK_LATER
    )
    reads = len(_gets(vendor))

    def refresh() -> subprocess.CompletedProcess[str]:
        """``marketpipe refresh`` of the whole range, a week later."""
        return subprocess.run(
            marketpipe_command("refresh", "--start", str(DAYS[0]), "--end", str(DAYS[-1])),
            cwd=workdir,
            env={**env, "MARKETPIPE_NOW": WEEK_LATER.isoformat()},
            capture_output=True,
            text=True,
        )

    refreshed = refresh()
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert sorted(_gets(vendor)[reads:]) == [200, 200]
    # AAPL's corrected Tuesday, and Friday for both (from the file now, without VWAP).
    assert "3 partition(s) replaced" in refreshed.stdout, refreshed.stdout
    with CheckpointStore(workdir / "lake") as store:
        sources = store.partition_sources(DAYS[0], DAYS[-1])
        history = store.replacements("AAPL")
    assert len(sources) == len(UNIVERSE) * len(DAYS)
    assert sorted(change.day for change in history) == [DAYS[1], DAYS[-1]]
    again = refresh()
    assert "0 partition(s) replaced" in again.stdout, again.stdout + again.stderr
    assert len(_gets(vendor)) == reads + 2  # nothing read: every version is known


def test_the_plan_counts_one_file_read_per_day_for_every_symbol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", "polygon-demo-key")
    monkeypatch.setenv("POLYGON_S3_ACCESS_KEY_ID", "AKIAFLATFILES")
    monkeypatch.setenv("POLYGON_S3_SECRET_ACCESS_KEY", "flat-secret-value")
    tickers = [f"S{index:03d}" for index in range(30)]
    config = {
        "symbols": tickers,
        "start": DAYS[0],
        "end": DAYS[-1],
        "data_dir": str(tmp_path / "lake"),
        "vendor": "polygon",
        "polygon": {"flat_files": True},
    }
    plan = build_plan(load_settings(config, now=WEEK_LATER))
    # One job for all 30 symbols (not symbols_per_job's 10), a file read per day, no pages.
    assert [len(job.symbols) for job in plan.jobs] == [30]
    assert plan.file_reads == len(DAYS) and plan.jobs[0].estimated_requests == 0
    monkeypatch.delenv("POLYGON_S3_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="POLYGON_S3_SECRET_ACCESS_KEY"):
        load_settings(config, now=WEEK_LATER)


def test_a_renamed_security_is_read_under_the_ticker_it_traded_as_each_day(
    s3_api: S3Server, tmp_path: Path
) -> None:
    days = [s.date for s in trading_sessions(dt.date(2024, 1, 29), dt.date(2024, 2, 2))]
    now = dt.datetime(2024, 2, 20, tzinfo=dt.UTC)
    server = start_simulator(market_now=now, securities=list(DEMO_SECURITIES))
    vendor = Vendor(server, s3_api, s3_api.create_bucket())
    renamed = KnownSecurity(
        traded_as=(
            TradedAs(ticker="CDAY", last=dt.date(2024, 1, 31)),
            TradedAs(ticker="DAY", first=dt.date(2024, 2, 1)),
        )
    )
    stream = dataclasses.replace(STREAM, securities=(("DAY", renamed),))
    try:
        publish_flat_files(
            vendor.s3.client(), vendor.bucket, PREFIX, server.app.polygon, days, [], now
        )
        lakes = {"flat": tmp_path / "flat", "rest": tmp_path / "rest"}
        with (
            vendor.files() as files,
            polygon_client(server) as rest,
            CheckpointStore(lakes["flat"]) as flat_store,
            CheckpointStore(lakes["rest"]) as rest_store,
        ):
            ingest_flat_files(
                files, rest, flat_store, lakes["flat"], ["DAY"], days, stream, now=now
            )
            ingest_days(rest, rest_store, lakes["rest"], ["DAY"], days, stream, now=now)
    finally:
        server.stop()
    assert reconcile_lakes(lakes["flat"], lakes["rest"]).agree
    # Before the rename the file lists CDAY: those rows are DAY's security's.
    january = read_bars(["DAY"], days[0], days[2], data_dir=lakes["flat"])
    assert january.num_rows > 0 and set(january["symbol"].to_pylist()) == {"DAY"}
