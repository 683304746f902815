"""A secret set in the environment never reaches a log line, an error, a repr or a file."""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import SecretStr

from marketpipe.connectors import (
    AlpacaClient,
    AlpacaConfig,
    ApiError,
    ClientConfig,
    ConnectorError,
    QueryApiKeyAuth,
    RetryExhaustedError,
    TlsVerificationError,
)
from marketpipe.simulator import FaultConfig
from tests.conftest import FakeClock, bars_query, start_simulator
from tests.test_base_api_client import ItemsClient

KEY_ID = "PKLEAKCHECK0000ID"
SECRET = "SKLEAKCHECK-5ecr3t-value"


def _assert_clean(text: str) -> None:
    assert SECRET not in text
    assert KEY_ID not in text


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_environment_keys_stay_out_of_logs_errors_and_files(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    clock: FakeClock,
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    faults = FaultConfig(sequence=("429", "500", "reset", "truncate", "invalid_json"))
    server = start_simulator(clock=clock, key_id=KEY_ID, secret_key=SECRET, faults=faults)
    try:
        config = AlpacaConfig(base_url=server.url)
        client = AlpacaClient(config, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep)
        with client:
            tables = list(client.fetch_batch(bars_query()))
            assert sum(t.num_rows for t in tables) > 0
            texts = [repr(config), str(config), repr(client.transport), repr(client.__dict__)]
        monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET + "-wrong")
        wrong = AlpacaClient(AlpacaConfig(base_url=server.url), clock=clock, sleep=clock.sleep)
        with wrong, pytest.raises(ApiError) as denied:
            list(wrong.fetch_batch(bars_query()))
        texts.append(_error_text(denied.value))
    finally:
        server.stop()
    assert any("retrying" in record.getMessage() for record in caplog.records)
    texts.append(caplog.text)
    texts.extend(repr(record.__dict__) for record in caplog.records)
    texts.append(repr([entry for entry in server.request_log.entries]))
    for text in texts:
        _assert_clean(text)


def test_query_string_keys_are_redacted_from_transport_errors(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ItemsClient(
        ClientConfig(base_url=f"http://127.0.0.1:{port}", max_attempts=2),
        auth=QueryApiKeyAuth(SecretStr(SECRET), param_name="apikey"),
        clock=clock,
        sleep=clock.sleep,
    )
    with client, pytest.raises(RetryExhaustedError) as info:
        list(client.fetch_batch("AAPL"))
    text = _error_text(info.value)
    assert f"127.0.0.1:{port}: connection refused" in text
    assert SECRET not in text
    assert isinstance(info.value, ConnectorError)


def test_parsed_tables_carry_no_credentials(clock: FakeClock) -> None:
    server = start_simulator(clock=clock)
    try:
        config = AlpacaConfig(base_url=server.url, key_id=KEY_ID, secret_key=SECRET)
        with AlpacaClient(config, clock=clock, sleep=clock.sleep) as client:
            table = pa.concat_tables(client.fetch_batch(bars_query()))
    finally:
        server.stop()
    _assert_clean(repr(table.schema.metadata) + table.to_string())


def test_tls_verification_stays_on_and_fails_fast(tmp_path: Path, clock: FakeClock) -> None:
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        config = AlpacaConfig(
            base_url=f"https://127.0.0.1:{server.server_address[1]}",
            key_id=KEY_ID,
            secret_key=SECRET,
        )
        client = AlpacaClient(config, clock=clock, sleep=clock.sleep)
        assert client.transport.session.verify is True
        with client, pytest.raises(TlsVerificationError, match="TLS verification failed"):
            list(client.fetch_batch(bars_query()))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert clock.sleeps == [], "a certificate failure is not retried"
