"""ClientConfig / AlpacaConfig validation: every bad value fails at construction, by name."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from marketpipe.connectors import AlpacaConfig, ClientConfig

SECRET = "sk-CONFIG-SECRET-9f8e7d"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("page_size", 0, "greater than or equal to 1"),
        ("connect_timeout", -1, "greater than 0"),
        ("read_timeout", 0, "greater than 0"),
        ("max_attempts", 0, "greater than or equal to 1"),
        ("requests_per_minute", 0, "greater than or equal to 1"),
        ("max_retry_seconds", 0, "greater than 0"),
        ("backoff_base", "fast", "valid number"),
    ],
)
def test_invalid_values_name_their_field(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ClientConfig(base_url="https://api.example.com", **{field: value})
    error = info.value.errors()[0]
    assert error["loc"] == (field,)
    assert fragment in str(info.value)


def test_remote_plain_http_is_refused_but_loopback_is_allowed() -> None:
    with pytest.raises(ValidationError, match=r"base_url[\s\S]*plain http; use https"):
        ClientConfig(base_url="http://data.example.com")
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        assert ClientConfig(base_url=url).base_url == url
    assert ClientConfig(base_url="https://x.example.com/").base_url == "https://x.example.com"


@pytest.mark.parametrize(
    "url",
    ["ftp://x.example.com", "data.example.com", "https://u:p@x.example.com", "https://x/?a=1"],
)
def test_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        ClientConfig(base_url=url)


def test_unknown_fields_and_inverted_backoff_are_refused() -> None:
    with pytest.raises(ValidationError, match="page_sise"):
        ClientConfig(base_url="https://x.example.com", page_sise=5)
    with pytest.raises(ValidationError, match=r"backoff_cap \(1.0\) must be at least backoff_base"):
        ClientConfig(base_url="https://x.example.com", backoff_base=2, backoff_cap=1)


def test_alpaca_page_size_is_capped_at_10000() -> None:
    with pytest.raises(ValidationError, match="page_size"):
        AlpacaConfig(key_id="k", secret_key="s", page_size=10_001)


def test_alpaca_keys_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "PKENVKEY")
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.delenv("APCA_API_DATA_URL", raising=False)
    config = AlpacaConfig()
    assert config.base_url == "https://data.alpaca.markets"
    assert config.key_id.get_secret_value() == "PKENVKEY"
    assert config.secret_key.get_secret_value() == SECRET
    monkeypatch.setenv("APCA_API_DATA_URL", "http://127.0.0.1:5000")
    assert AlpacaConfig().base_url == "http://127.0.0.1:5000"
    explicit = AlpacaConfig(base_url="https://data.sandbox.alpaca.markets", key_id="PKARG")
    assert explicit.base_url == "https://data.sandbox.alpaca.markets"
    assert explicit.key_id.get_secret_value() == "PKARG"


def test_missing_alpaca_keys_say_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="key_id is missing: set the APCA_API_KEY_ID"):
        AlpacaConfig()
    with pytest.raises(ValidationError, match="secret_key is missing: set the APCA_API_SEC"):
        AlpacaConfig(key_id="PK")
    with pytest.raises(ValidationError, match=r"key_id[\s\S]*must not be empty"):
        AlpacaConfig(key_id=" ", secret_key="s")


def test_secrets_never_show_in_repr_or_dumps() -> None:
    config = AlpacaConfig(key_id=SecretStr("PKVISIBLE"), secret_key=SecretStr(SECRET))
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SECRET not in text
        assert "PKVISIBLE" not in text
