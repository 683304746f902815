"""Pluggable authentication strategies; each knows its secrets so they can be redacted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from urllib.parse import quote, quote_plus

from pydantic import SecretStr

from marketpipe.observability.logs import REDACTED


class AuthStrategy(ABC):
    """How a request is authenticated: headers and/or query parameters."""

    @abstractmethod
    def headers(self) -> dict[str, str]:
        """Headers to add to every request."""

    def query_params(self) -> dict[str, str]:
        """Query parameters to add to every request."""
        return {}

    def secret_values(self) -> tuple[str, ...]:
        """The raw secret strings, used only to scrub them from text."""
        return ()

    def redact(self, text: str) -> str:
        """Replace every secret (raw or URL-encoded) in ``text`` with ``***``."""
        for secret in self.secret_values():
            if not secret:
                continue
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoAuth(AuthStrategy):
    """No authentication."""

    def headers(self) -> dict[str, str]:
        """No headers."""
        return {}


class AlpacaKeyAuth(AuthStrategy):
    """Alpaca's ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` header pair."""

    def __init__(self, key_id: SecretStr, secret_key: SecretStr) -> None:
        self._key_id = key_id
        self._secret_key = secret_key

    def headers(self) -> dict[str, str]:
        """The two Alpaca key headers."""
        return {
            "APCA-API-KEY-ID": self._key_id.get_secret_value(),
            "APCA-API-SECRET-KEY": self._secret_key.get_secret_value(),
        }

    def secret_values(self) -> tuple[str, ...]:
        """Both keys."""
        return (self._key_id.get_secret_value(), self._secret_key.get_secret_value())


class BearerTokenAuth(AuthStrategy):
    """``Authorization: Bearer <token>`` (OAuth access tokens)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def secret_values(self) -> tuple[str, ...]:
        """The token."""
        return (self._token.get_secret_value(),)


class QueryApiKeyAuth(AuthStrategy):
    """An API key sent as a query parameter, e.g. ``?apikey=...``."""

    def __init__(self, key: SecretStr, param_name: str = "apikey") -> None:
        self._key = key
        self.param_name = param_name

    def headers(self) -> dict[str, str]:
        """No headers: the key travels in the query string."""
        return {}

    def query_params(self) -> dict[str, str]:
        """The key parameter."""
        return {self.param_name: self._key.get_secret_value()}

    def secret_values(self) -> tuple[str, ...]:
        """The key."""
        return (self._key.get_secret_value(),)

    def __repr__(self) -> str:
        return f"QueryApiKeyAuth(param_name={self.param_name!r})"
