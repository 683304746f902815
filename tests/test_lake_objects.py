"""The lake's stores: a local directory and S3 (moto's server on loopback), one interface."""

from __future__ import annotations

import concurrent.futures
import math
from pathlib import Path

import pytest

from marketpipe.lake.objects import (
    LocalStore,
    MissingBucket,
    S3Store,
    WriteConflict,
    open_store,
)
from tests.s3_server import S3Server


@pytest.fixture
def s3(s3_api: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    s3_api.point_here(monkeypatch)
    store = open_store(f"s3://{s3_api.create_bucket()}/lake")
    assert isinstance(store, S3Store)
    return store


def test_both_stores_behave_alike(tmp_path: Path, s3: S3Store) -> None:
    for store in (LocalStore(tmp_path / "lake"), s3):
        assert not store.any("ohlcv") and store.list("ohlcv") == []
        store.put("ohlcv/symbol=A/year=2024/x.parquet", b"one")
        store.put("ohlcv/symbol=B/y.parquet", b"two")
        store.put("corporate_actions/z.parquet", b"three")
        assert store.get("ohlcv/symbol=B/y.parquet") == b"two"
        assert store.exists("ohlcv/symbol=B/y.parquet")
        assert not store.exists("ohlcv/symbol=C/y.parquet")
        assert store.list("ohlcv") == [
            "ohlcv/symbol=A/year=2024/x.parquet",
            "ohlcv/symbol=B/y.parquet",
        ]
        assert store.any("ohlcv") and not store.any("quarantine")
        with pytest.raises(FileNotFoundError):
            store.get("ohlcv/missing.parquet")
        store.delete("ohlcv/symbol=B/y.parquet")
        store.delete("ohlcv/symbol=B/y.parquet")  # absent: fine
        assert store.list("ohlcv/symbol=B") == []


def test_an_object_appears_in_one_put_and_listing_takes_a_request_per_thousand(
    s3_api: S3Server, s3: S3Store
) -> None:
    before = len(s3_api.requests)
    s3.put("ohlcv/one.parquet", b"x" * 100_000)
    writes = s3_api.requests[before:]
    assert [request.method for request in writes] == ["PUT"]  # one request: no multipart
    assert "uploadId" not in writes[0].query
    keys = [f"ohlcv/symbol=S/{index:05d}.parquet" for index in range(1_001)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put(key, b"k"), keys))
    before = s3_api.count("GET", "list-type=2")
    assert s3.list("ohlcv/symbol=S") == keys
    assert s3_api.count("GET", "list-type=2") - before == math.ceil(1_001 / 1_000)


def test_a_conditional_put_takes_a_key_once(s3: S3Store) -> None:
    assert s3.put_conditionally("_state/lock", b"first") is not None
    assert s3.put_conditionally("_state/lock", b"second") is None
    assert s3.get("_state/lock") == b"first"


def test_a_new_object_never_replaces_other_bytes(s3: S3Store) -> None:
    # What keeps a writer that lost its lease from overwriting the new holder's partitions.
    key = "ohlcv/symbol=A/year=2024/month=01/day=02/bars.parquet"
    s3.put(key, b"the holder's bytes", create_only=True)
    s3.put(key, b"the holder's bytes", create_only=True)  # the same bytes again: fine
    with pytest.raises(WriteConflict, match="written meanwhile with other bytes"):
        s3.put(key, b"other bytes", create_only=True)
    s3.put_soon(key, b"other bytes", create_only=True)
    with pytest.raises(WriteConflict):
        s3.flush()
    assert s3.get(key) == b"the holder's bytes"
    s3.put(key, b"a refresh replaces on purpose")  # not create_only
    assert s3.get(key) == b"a refresh replaces on purpose"


def test_the_endpoint_comes_from_the_environment_or_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert S3Store("s3://bucket/prefix").endpoint_url == "http://127.0.0.1:9"
    assert S3Store("s3://bucket", "http://127.0.0.1:7").endpoint_url == "http://127.0.0.1:7"
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3Store("s3:///nobucket")


def test_uploads_handed_over_are_durable_after_the_flush(s3_api: S3Server, s3: S3Store) -> None:
    keys = [f"ohlcv/symbol=U/{index:03d}.parquet" for index in range(40)]
    for key in keys:
        s3.put_soon(key, key.encode())
    s3.flush()
    assert s3.list("ohlcv/symbol=U") == keys
    assert s3.get(keys[7]) == keys[7].encode()
    missing = S3Store("s3://no-such-bucket/lake")  # its upload fails: the flush says so
    missing.put_soon("ohlcv/x.parquet", b"x")
    with pytest.raises(
        MissingBucket, match=r"the bucket 'no-such-bucket' of s3://\S+ does not exist"
    ):
        missing.flush()
