"""Validated client configuration: every invalid value fails at construction, naming its field."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from marketpipe.foundation.network import is_loopback_host


def validate_base_url(url: str) -> str:
    """Check a vendor base URL: https (http only on loopback), a host, no query or fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http(s) URL such as https://data.example.com")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"{url!r} uses plain http; use https (http is allowed only for loopback hosts "
            "such as 127.0.0.1 or localhost)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r} must not contain credentials, a query or a fragment")
    return url.strip().rstrip("/")


def _require_non_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("must not be empty")
    return value


# A credential: a secret that is there (vendors' configs use it for their keys).
NonEmptySecret = Annotated[SecretStr, AfterValidator(_require_non_empty)]


def with_environment_defaults(
    data: Any, sources: Mapping[str, tuple[str, ...]], required: Collection[str]
) -> Any:
    """``data`` (a config's raw fields) with each field it lacks taken from the first of its
    environment variables that is set; a ``required`` field still missing is an error that
    names its variables (never a value)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for field, variables in sources.items():
        found = next((os.environ[name] for name in variables if os.environ.get(name)), None)
        if data.get(field) is None and found is not None:
            data[field] = found
        if data.get(field) is None and field in required:
            first, *others = variables
            alternatives = f" (or {', '.join(others)})" if others else ""
            raise ValueError(
                f"{field} is missing: set the {first} environment variable{alternatives} "
                f"or pass {field}= explicitly"
            )
    return data


class ClientConfig(BaseModel):
    """Transport settings shared by every vendor client."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    base_url: str = Field(description="Vendor API root, e.g. https://data.alpaca.markets")
    connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to open a connection")
    read_timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for response data")
    max_attempts: int = Field(6, ge=1, le=50, description="Attempts per request, first included")
    max_retry_seconds: float = Field(
        300.0, gt=0, description="Upper bound on time spent retrying one request"
    )
    backoff_base: float = Field(0.5, gt=0, le=60, description="First back-off ceiling, seconds")
    backoff_cap: float = Field(30.0, gt=0, le=3600, description="Largest back-off, seconds")
    page_size: int = Field(10_000, ge=1, le=100_000, description="Rows requested per page")
    requests_per_minute: int = Field(
        200, ge=1, le=100_000, description="Request budget spent proactively, per minute"
    )
    rate_window_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="The vendor's rate window: a 429 without a wait hint waits past it",
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return validate_base_url(value)

    @model_validator(mode="after")
    def _check_backoff(self) -> ClientConfig:
        if self.backoff_cap < self.backoff_base:
            raise ValueError(
                f"backoff_cap ({self.backoff_cap}) must be at least backoff_base "
                f"({self.backoff_base})"
            )
        return self


class AlpacaConfig(ClientConfig):
    """Alpaca Market Data settings; keys and data URL fall back to the ``APCA_*`` environment."""

    DEFAULT_BASE_URL: ClassVar[str] = "https://data.alpaca.markets"
    ENV_KEY_ID: ClassVar[str] = "APCA_API_KEY_ID"
    ENV_SECRET_KEY: ClassVar[str] = "APCA_API_SECRET_KEY"
    ENV_DATA_URL: ClassVar[str] = "APCA_API_DATA_URL"
    DEFAULT_TRADING_URL: ClassVar[str] = "https://api.alpaca.markets"
    ENV_TRADING_URL: ClassVar[str] = "APCA_API_BASE_URL"

    base_url: str = Field(DEFAULT_BASE_URL, description="Alpaca data API root")
    trading_url: str = Field(
        DEFAULT_TRADING_URL, description="Alpaca trading API root (assets: what a symbol names)"
    )
    key_id: NonEmptySecret = Field(description="Alpaca API key id (env APCA_API_KEY_ID)")
    secret_key: NonEmptySecret = Field(
        description="Alpaca API secret key (env APCA_API_SECRET_KEY)"
    )
    page_size: int = Field(10_000, ge=1, le=10_000, description="Bars per page, at most 10000")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any) -> Any:
        sources = {
            "key_id": (cls.ENV_KEY_ID,),
            "secret_key": (cls.ENV_SECRET_KEY,),
            "base_url": (cls.ENV_DATA_URL,),
            "trading_url": (cls.ENV_TRADING_URL,),
        }
        data = with_environment_defaults(data, sources, required=("key_id", "secret_key"))
        base_url = data.get("base_url") if isinstance(data, dict) else None
        own = base_url and str(base_url).rstrip("/") != cls.DEFAULT_BASE_URL
        if own and not data.get("trading_url"):
            # A data URL of one's own (a proxy, the simulator) serves the assets too.
            data = {**data, "trading_url": base_url}
        return data

    @field_validator("trading_url")
    @classmethod
    def _check_trading_url(cls, value: str) -> str:
        return validate_base_url(value)
