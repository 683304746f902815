"""The one HTTP transport every vendor shares: auth, rate limiting, retries, decoding."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import requests
import urllib3.exceptions

from marketpipe.chaos import crash_point
from marketpipe.connectors.auth import AuthStrategy, NoAuth
from marketpipe.connectors.config import ClientConfig
from marketpipe.connectors.errors import ApiError, RetryExhaustedError, TlsVerificationError
from marketpipe.connectors.rate_limit import NoRateLimit, RateLimiter
from marketpipe.connectors.retry import (
    RetryableFailure,
    RetryBudget,
    RetryCause,
    RetryPolicy,
    server_wait_hint,
)
from marketpipe.foundation.version import VERSION
from marketpipe.observability.metrics import MetricsRecorder

logger = logging.getLogger(__name__)

_RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)})
_USER_AGENT = f"marketpipe/{VERSION}"


@dataclass(frozen=True)
class RequestSpec:
    """A vendor request, described without credentials: method, path and query."""

    path: str
    params: tuple[tuple[str, str], ...] = ()
    method: str = "GET"
    endpoint: str = ""

    @property
    def name(self) -> str:
        """Short name for logs and errors (the endpoint label, else the path)."""
        return self.endpoint or self.path


@dataclass(frozen=True)
class Response:
    """A decoded successful response and what it took to get it."""

    status: int
    headers: Mapping[str, str]
    payload: Any
    body_bytes: int
    attempts: int
    elapsed_seconds: float


@dataclass(frozen=True)
class _Success:
    status: int
    headers: Mapping[str, str]
    payload: Any
    body_bytes: int


def _decode_json(body: bytes) -> Any:
    """Decode with orjson; fall back to the stdlib for non-standard tokens such as NaN."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _vendor_message(body: bytes) -> str:
    """The vendor's ``message`` from an error body; an HTML page (a proxy's) by its title,
    never its markup; else the start of the body as text."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        for name in ("message", "error"):
            if isinstance(decoded.get(name), str):
                return decoded[name]
    text = body.decode("utf-8", errors="replace").strip()
    if text[:200].lower().lstrip().startswith(("<html", "<!doctype")):
        title = _HTML_TITLE.search(text)
        return f"an HTML page ({title.group(1).strip()!r})" if title else "an HTML page"
    return text[:200] or "(empty body)"


_HTML_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# Credentials a vendor refused in this process (by vendor, URL and a hash of the secrets):
# every later request with them fails at once instead of asking again.
_refused: dict[tuple[str, str, str], ApiError] = {}
_refused_lock = threading.Lock()


@dataclass
class HttpTransport:
    """Sends :class:`RequestSpec` objects with auth, a shared rate budget and bounded retries.

    Time is injectable: ``clock`` (epoch seconds), ``sleep`` and ``async_sleep`` let tests
    run retry schedules instantly and deterministically. The async path runs the blocking
    HTTP exchange in a worker thread and awaits every wait on the event loop.
    """

    config: ClientConfig
    auth: AuthStrategy = field(default_factory=NoAuth)
    rate_limiter: RateLimiter = field(default_factory=NoRateLimit)
    vendor: str = "http"
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    session: requests.Session = field(default_factory=requests.Session)
    metrics: MetricsRecorder = field(default_factory=MetricsRecorder)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy(
            max_attempts=self.config.max_attempts,
            max_elapsed=self.config.max_retry_seconds,
            base=self.config.backoff_base,
            cap=self.config.backoff_cap,
            rng=self.rng,
            rate_window=self.config.rate_window_seconds,
        )

    def __repr__(self) -> str:
        return f"HttpTransport(vendor={self.vendor!r}, base_url={self.config.base_url!r})"

    def _credentials(self) -> tuple[str, str, str]:
        secrets = "\0".join(self.auth.secret_values()).encode()
        return self.vendor, self.config.base_url, hashlib.sha256(secrets).hexdigest()

    def _refuse_known_bad_credentials(self, spec: RequestSpec) -> None:
        with _refused_lock:
            refused = _refused.get(self._credentials())
        if refused is not None:
            raise ApiError(refused.status, refused.message, spec.name)

    def send(self, spec: RequestSpec) -> Response:
        """Send ``spec``, retrying transient failures; raise :class:`ApiError` on 4xx."""
        self._refuse_known_bad_credentials(spec)
        budget = RetryBudget(self.policy, spec.name, self.clock())
        while True:
            self.sleep(self._reserve_slot(spec))
            budget.attempts += 1
            outcome = self._attempt(spec, budget.attempts)
            if isinstance(outcome, _Success):
                return self._response(outcome, budget)
            self.sleep(self._retry_delay(spec, budget, outcome))

    async def asend(self, spec: RequestSpec) -> Response:
        """Async twin of :meth:`send` with identical retry behaviour."""
        self._refuse_known_bad_credentials(spec)
        budget = RetryBudget(self.policy, spec.name, self.clock())
        while True:
            await self.async_sleep(self._reserve_slot(spec))
            budget.attempts += 1
            outcome = await asyncio.to_thread(self._attempt, spec, budget.attempts)
            if isinstance(outcome, _Success):
                return self._response(outcome, budget)
            await self.async_sleep(self._retry_delay(spec, budget, outcome))

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def _response(self, outcome: _Success, budget: RetryBudget) -> Response:
        return Response(
            status=outcome.status,
            headers=outcome.headers,
            payload=outcome.payload,
            body_bytes=outcome.body_bytes,
            attempts=budget.attempts,
            elapsed_seconds=self.clock() - budget.started,
        )

    def _reserve_slot(self, spec: RequestSpec) -> float:
        wait = self.rate_limiter.reserve()
        if wait > 0:
            self.metrics.rate_limit_wait(self.vendor, spec.name, wait)
            logger.info(
                "rate budget: waiting %.2fs before %s",
                wait,
                spec.name,
                extra={
                    "event": "rate_limit.wait",
                    "vendor": self.vendor,
                    "endpoint": spec.name,
                    "wait_s": round(wait, 3),
                },
            )
        return wait

    def _retry_delay(
        self, spec: RequestSpec, budget: RetryBudget, failure: RetryableFailure
    ) -> float:
        try:
            delay = budget.next_delay(failure, self.clock())
        except RetryExhaustedError:
            self.metrics.error(self.vendor, spec.name, "retries_exhausted")
            raise
        self.metrics.retry(self.vendor, spec.name, failure.cause.value, delay)
        logger.warning(
            "retrying %s after %s (attempt %d): waiting %.2fs",
            spec.name,
            failure.cause.value,
            budget.attempts,
            delay,
            extra={
                "event": "request.retry",
                "vendor": self.vendor,
                "endpoint": spec.name,
                "cause": failure.cause.value,
                "attempt": budget.attempts,
                "delay_s": round(delay, 3),
                "detail": failure.detail,
            },
        )
        return delay

    def _attempt(self, spec: RequestSpec, attempt: int) -> _Success | RetryableFailure:
        """One HTTP exchange: success, a retryable failure, or a raised :class:`ApiError`."""
        url = self.config.base_url + spec.path
        params = list(spec.params) + list(self.auth.query_params().items())
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": _USER_AGENT,
            **self.auth.headers(),
        }
        started = time.perf_counter()
        try:
            response = self.session.request(
                spec.method,
                url,
                params=params,
                headers=headers,
                timeout=(self.config.connect_timeout, self.config.read_timeout),
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            self.metrics.error(self.vendor, spec.name, "tls")
            detail = self.auth.redact(str(exc))[:300]
            raise TlsVerificationError(
                f"{spec.name}: TLS verification failed for {self.config.base_url} ({detail}); "
                "MarketPipe never turns verification off: fix the certificate or the URL"
            ) from None
        except requests.Timeout as exc:
            return self._failure(spec, RetryCause.TIMEOUT, exc, started)
        except requests.ConnectionError as exc:
            failure = self._failure(spec, RetryCause.CONNECTION, exc, started)
            return replace(failure, unreachable=unreachable_host(url, exc))
        except requests.RequestException as exc:
            return self._failure(spec, RetryCause.CONNECTION, exc, started)
        crash_point("request")
        try:
            body = response.raw.read(decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            return self._failure(spec, RetryCause.TIMEOUT, exc, started)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return self._failure(spec, RetryCause.BAD_BODY, exc, started)
        finally:
            response.close()
        status = response.status_code
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.attempt(self.vendor, spec.name, status, latency_ms, len(body))
        self.rate_limiter.observe(status, response.headers)
        logger.debug(
            "%s %s -> %d",
            spec.method,
            spec.name,
            status,
            extra={
                "event": "request",
                "vendor": self.vendor,
                "endpoint": spec.name,
                "status": status,
                "attempt": attempt,
                "latency_ms": round(latency_ms, 2),
                "bytes": len(body),
            },
        )
        if 200 <= status < 300:
            try:
                payload = _decode_json(body)
            except ValueError as exc:
                return RetryableFailure(
                    RetryCause.BAD_BODY, f"undecodable JSON body ({len(body)} bytes): {exc}"
                )
            return _Success(status, response.headers, payload, len(body))
        message = self.auth.redact(_vendor_message(body))
        if status in _RETRYABLE_STATUSES:
            cause = RetryCause.RATE_LIMITED if status == 429 else RetryCause.SERVER_ERROR
            hint = server_wait_hint(response.headers, self.clock())
            return RetryableFailure(cause, f"HTTP {status}: {message}", hint)
        if 300 <= status < 400:
            message = "unexpected redirect (redirects are not followed, to protect credentials)"
        self.metrics.error(self.vendor, spec.name, f"http_{status}")
        error = ApiError(status, message, spec.name)
        if status == 401:
            with _refused_lock:
                _refused[self._credentials()] = error
        raise error

    def _failure(
        self, spec: RequestSpec, cause: RetryCause, exc: BaseException, started: float
    ) -> RetryableFailure:
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.attempt(self.vendor, spec.name, cause.value, latency_ms, 0)
        # Transport exceptions quote the URL, which may carry a query-string key: redact.
        return RetryableFailure(cause, self.auth.redact(f"{type(exc).__name__}: {exc}"))


def unreachable_host(url: str, exc: BaseException) -> str | None:
    """``host:port: <why>`` when no connection to ``url``'s host could be made (the name does
    not resolve, the connection was refused, no route), else ``None`` (e.g. a connection
    dropped mid-answer, which a retry gets past)."""
    cause: BaseException | None = exc
    reason = fallback = None
    seen: set[int] = set()
    while cause is not None and reason is None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            reason = "the name does not resolve (no network, or a DNS problem)"
        elif isinstance(cause, ConnectionRefusedError):
            reason = "connection refused (nothing listens there)"
        elif isinstance(cause, OSError) and cause.errno in _NO_ROUTE:
            reason = "no route to the host (no network?)"
        elif isinstance(cause, urllib3.exceptions.NewConnectionError):
            fallback = "no connection could be made"
        cause = cause.__cause__ or cause.__context__ or _wrapped_reason(cause)
    reason = reason or fallback
    if reason is None:
        return None
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}: {reason}"


_NO_ROUTE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN)


def _wrapped_reason(error: BaseException) -> BaseException | None:
    """The exception urllib3 and requests keep in ``reason`` or ``args`` (not as a cause)."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    return next((arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)), None)
