"""The corporate-actions connector: the bars connector's contract, over real HTTP."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import (
    CORPORATE_ACTIONS_SCHEMA,
    AlpacaConfig,
    AuthenticationError,
    CorporateActionsClient,
    CorporateActionsQuery,
    ResponseFormatError,
    SlidingWindowRateLimiter,
)
from marketpipe.simulator import FaultConfig, SimulatorServer
from tests.conftest import FakeClock, start_simulator

RECORDS = (
    (
        "forward_splits",
        {
            "id": "fs1",
            "symbol": "AAPL",
            "cusip": "037833100",
            "old_rate": 1,
            "new_rate": 4,
            "process_date": "2024-02-12",
            "ex_date": "2024-02-12",
            "record_date": "2024-02-09",
            "payable_date": "2024-02-09",
        },
    ),
    (
        "cash_dividends",
        {
            "id": "cd1",
            "symbol": "MSFT",
            "cusip": "594918104",
            "rate": 0.75,
            "special": False,
            "foreign": False,
            "process_date": "2024-02-14",
            "ex_date": "2024-02-14",
            "record_date": "2024-02-15",
            "payable_date": "2024-03-14",
        },
    ),
    (
        "reverse_splits",
        {
            "id": "rs1",
            "symbol": "XYZ",
            "old_rate": 10,
            "new_rate": 1,
            "old_cusip": "1",
            "new_cusip": "2",
            "process_date": "2024-01-20",
            "ex_date": "2024-01-22",
        },
    ),
    (
        "stock_dividends",
        {
            "id": "sd1",
            "symbol": "MSFT",
            "rate": 0.05,
            "process_date": "2024-01-10",
            "ex_date": "2024-01-11",
        },
    ),
    (
        "spin_offs",
        {
            "id": "so1",
            "source_symbol": "AAPL",
            "source_rate": 1,
            "new_symbol": "APPS",
            "new_rate": 0.5,
            "process_date": "2024-01-30",
            "ex_date": "2024-01-31",
        },
    ),
    (
        "name_changes",
        {"id": "nc1", "old_symbol": "XYZ", "new_symbol": "XYZN", "process_date": "2024-01-25"},
    ),
    (
        "widget_events",
        {"id": "we1", "symbol": "AAPL", "process_date": "2024-01-05", "widgets": 3},
    ),  # a kind this release does not know
)
QUERY = CorporateActionsQuery(
    symbols=("AAPL", "MSFT", "XYZ"), start=dt.date(2024, 1, 1), end=dt.date(2024, 3, 31)
)
KEYS = {"key_id": SecretStr("demo"), "secret_key": SecretStr("demo")}


def client(server: SimulatorServer, clock: FakeClock | None = None, **config: object):
    options = {} if clock is None else {"clock": clock, "sleep": clock.sleep}
    settings = AlpacaConfig(base_url=server.url, **{**KEYS, **config})  # type: ignore[arg-type]
    return CorporateActionsClient(settings, **options)


def test_pages_across_groups_become_canonical_rows_unknown_kinds_kept() -> None:
    server = start_simulator(corporate_actions=RECORDS)
    try:
        with client(server, page_size=2) as actions:
            tables = list(actions.fetch_batch(QUERY))
    finally:
        server.stop()
    assert len(server.request_log.entries) == math.ceil(len(RECORDS) / 2)
    table = pa.concat_tables(tables)
    assert table.schema.equals(CORPORATE_ACTIONS_SCHEMA)
    rows = {row["id"]: row for row in table.to_pylist()}
    assert set(rows) == {record["id"] for _, record in RECORDS}
    split, dividend, spin = rows["fs1"], rows["cd1"], rows["so1"]
    assert (split["type"], split["symbol"], split["old_rate"], split["new_rate"]) == (
        "forward_split",
        "AAPL",
        1.0,
        4.0,
    )
    assert split["ex_date"] == dt.date(2024, 2, 12)
    assert (dividend["type"], dividend["rate"], dividend["ex_date"]) == (
        "cash_dividend",
        0.75,
        dt.date(2024, 2, 14),
    )
    assert (spin["symbol"], spin["new_symbol"], spin["new_rate"]) == ("AAPL", "APPS", 0.5)
    assert (rows["nc1"]["symbol"], rows["nc1"]["new_symbol"]) == ("XYZ", "XYZN")
    assert rows["rs1"]["type"] == "reverse_split" and rows["sd1"]["type"] == "stock_dividend"
    unknown = rows["we1"]
    assert unknown["type"] == "widget_event" and json.loads(unknown["raw"])["widgets"] == 3
    # Pages go oldest process date first; within a page records are grouped by kind.
    spans = [
        (min(t["process_date"].to_pylist()), max(t["process_date"].to_pylist())) for t in tables
    ]
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))


def test_transient_faults_are_retried_like_the_bars(clock: FakeClock) -> None:
    faults = FaultConfig(sequence=("500", "reset", "429_retry_after"))
    server = start_simulator(clock=clock, corporate_actions=RECORDS, faults=faults)
    try:
        with client(server, clock) as actions:
            (table,) = list(actions.fetch_batch(QUERY))
    finally:
        server.stop()
    assert table.num_rows == len(RECORDS)
    assert [entry.status for entry in server.request_log.entries][-1] == 200
    assert len(server.request_log.entries) == 4 and len(clock.sleeps) == 3


def test_requests_spend_the_shared_budget(clock: FakeClock) -> None:
    server = start_simulator(clock=clock, corporate_actions=RECORDS)
    limiter = SlidingWindowRateLimiter(2, clock=clock)
    try:
        options = {"clock": clock, "sleep": clock.sleep}
        settings = AlpacaConfig(base_url=server.url, page_size=2, **KEYS)  # type: ignore[arg-type]
        with CorporateActionsClient(settings, rate_limiter=limiter, **options) as actions:
            list(actions.fetch_batch(QUERY))
    finally:
        server.stop()
    # Four pages at two per minute: the third and fourth wait for the window.
    assert len(clock.sleeps) == 1 and clock.sleeps[0] >= 60


def test_wrong_keys_fail_at_once_without_the_secret_anywhere() -> None:
    server = start_simulator(key_id="PKREAL", secret_key="sk-real", corporate_actions=RECORDS)
    secret = "sk-wrong-Zq9-never-shown"
    try:
        settings = AlpacaConfig(
            base_url=server.url, key_id=SecretStr("PKREAL"), secret_key=SecretStr(secret)
        )
        with CorporateActionsClient(settings) as actions:
            with pytest.raises(AuthenticationError) as refused:
                list(actions.fetch_batch(QUERY))
            assert secret not in repr(actions.transport) + repr(settings)
    finally:
        server.stop()
    assert refused.value.status == 401 and secret not in str(refused.value)
    assert "check APCA_API_KEY_ID and APCA_API_SECRET_KEY" in str(refused.value)
    assert len(server.request_log.entries) == 1


def test_a_malformed_record_is_rejected_with_its_reason_and_nothing_is_stored() -> None:
    broken = (
        *RECORDS[:2],
        (
            "cash_dividends",
            {"id": "bad1", "symbol": "MSFT", "rate": 0.1, "process_date": "2024-02-30"},
        ),
    )
    server = start_simulator(corporate_actions=broken)
    received = []
    try:
        with client(server) as actions, pytest.raises(ResponseFormatError) as rejected:
            received.extend(actions.fetch_batch(QUERY))
    finally:
        server.stop()
    assert "cash_dividend record 'bad1' is malformed (process_date:" in str(rejected.value)
    assert received == []
    with pytest.raises(ValueError, match="unknown corporate action type"):
        CorporateActionsQuery(
            symbols=("AAPL",), start=QUERY.start, end=QUERY.end, types=("stock_split",)
        )
