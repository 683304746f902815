"""Errors raised by connectors; messages name the endpoint and status, never a credential."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class for every error a connector raises."""


class ApiError(ConnectorError):
    """The vendor rejected a request with a non-retryable status (400, 401, 403, 404, 422 ...)."""

    def __init__(self, status: int, message: str, endpoint: str) -> None:
        self.status = status
        self.message = message
        self.endpoint = endpoint
        super().__init__(f"{endpoint} answered HTTP {status}: {message}")


class AuthenticationError(ApiError):
    """The vendor refused the credentials; the message names the variables to check."""


class SubscriptionError(ApiError):
    """The account's plan does not cover the data asked for; retrying cannot help."""


def may_differ_by_symbol(error: ConnectorError) -> bool:
    """Whether asking symbol by symbol could get past ``error``: not when the credentials,
    the subscription or TLS are refused (every symbol would be refused alike)."""
    if isinstance(error, (TlsVerificationError, VendorUnreachable)):
        return False
    return not (isinstance(error, ApiError) and error.status in (401, 403))


class RetryExhaustedError(ConnectorError):
    """A request kept failing with retryable errors until the attempt or time bound ran out."""

    def __init__(self, endpoint: str, attempts: int, last_cause: str, reason: str) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.last_cause = last_cause
        super().__init__(
            f"{endpoint} failed after {attempts} attempt(s) ({reason}); last error: {last_cause}"
        )


class VendorUnreachable(RetryExhaustedError):
    """No connection to the vendor's host could be made: no network, a name that does not
    resolve, a refused connection. Said without the endpoint, since every endpoint of that
    host fails alike."""

    def __init__(self, endpoint: str, attempts: int, unreachable: str) -> None:
        ConnectorError.__init__(
            self,
            f"cannot reach {unreachable} ({attempts} attempt(s)): check the network "
            "connection or proxy, or the vendor's base_url in the config",
        )
        self.endpoint = endpoint
        self.attempts = attempts
        self.last_cause = unreachable


class PaginationError(ConnectorError):
    """The vendor's cursors would make pagination loop forever."""


class UnknownSymbolError(ConnectorError):
    """The vendor does not know a symbol (no bars in the range and no latest bar)."""


class TlsVerificationError(ConnectorError):
    """The server's TLS certificate did not verify; retrying cannot help, so none is made."""


class ResponseFormatError(ConnectorError):
    """A successful response did not have the shape the connector expects."""


def is_permanent(error: BaseException) -> bool:
    """Whether a person must act before asking again can succeed (refused credentials or
    plan, an unknown symbol, a request the vendor calls invalid, a bad setting), as opposed
    to an outage, throttling or a dropped connection that the next run gets past."""
    if isinstance(error, (UnknownSymbolError, TlsVerificationError, ValueError)):
        return True
    if isinstance(error, ApiError):
        return 400 <= error.status < 500 and error.status not in (408, 409, 425, 429)
    return False
