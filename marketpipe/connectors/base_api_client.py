"""Vendor-agnostic client: vendors describe requests and parse pages; the base paginates."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa

from marketpipe.connectors.auth import AuthStrategy, NoAuth
from marketpipe.connectors.config import ClientConfig
from marketpipe.connectors.errors import (
    ApiError,
    AuthenticationError,
    ConnectorError,
    PaginationError,
)
from marketpipe.connectors.models import Dataset
from marketpipe.connectors.rate_limit import RateLimiter, SlidingWindowRateLimiter
from marketpipe.connectors.read_ahead import ReadAhead
from marketpipe.connectors.transport import HttpTransport, RequestSpec, Response

logger = logging.getLogger(__name__)

QueryT = TypeVar("QueryT")


@dataclass(frozen=True)
class Page:
    """One decoded page of a paginated response, with the cursor that requested it."""

    number: int
    cursor: str | None
    request: RequestSpec
    response: Response

    @property
    def payload(self) -> Any:
        """The decoded JSON body."""
        return self.response.payload


class _Pagination(Generic[QueryT]):
    """Cursor bookkeeping shared by the sync and async page loops."""

    def __init__(self, client: BaseApiClient[QueryT], query: QueryT) -> None:
        self.client = client
        self.query = query
        self.cursor: str | None = None
        self.number = 0
        self.done = False
        self.seen: set[str] = set()

    def next_request(self) -> RequestSpec | None:
        """The request for the next page, or ``None`` once the last page was seen."""
        return None if self.done else self.client.build_request(self.query, self.cursor)

    def record(self, spec: RequestSpec, response: Response) -> Page:
        """Wrap ``response`` as a page and move the cursor on, refusing a repeated cursor."""
        self.number += 1
        page = Page(self.number, self.cursor, spec, response)
        cursor = self.client.next_cursor(page)
        if cursor is not None and cursor in self.seen:
            raise PaginationError(
                f"{spec.name} returned the same cursor again after page {self.number}; "
                "stopping instead of looping forever"
            )
        if cursor is None:
            self.done = True
        else:
            self.seen.add(cursor)
        self.cursor = cursor
        return page


class BaseApiClient(ABC, Generic[QueryT]):
    """Cursor-paginated vendor client over the shared :class:`HttpTransport`.

    A vendor implements three methods: :meth:`build_request` (the request for a query and
    cursor), :meth:`next_cursor` (the cursor for the next page, ``None`` when done) and
    :meth:`parse_page` (a page as an Arrow table in :attr:`dataset`'s schema). Transport,
    retries, rate limits, auth and streaming are the base's job.
    """

    vendor: ClassVar[str]
    # The environment variables holding this vendor's credentials, named when they are refused.
    credential_variables: ClassVar[tuple[str, ...]] = ()
    dataset: ClassVar[Dataset]

    def __init__(
        self,
        config: ClientConfig,
        *,
        auth: AuthStrategy | None = None,
        rate_limiter: RateLimiter | None = None,
        transport: HttpTransport | None = None,
        **transport_options: Any,
    ) -> None:
        """Build the client; ``transport_options`` (clock, sleep, rng ...) go to the transport."""
        self.config = config
        if transport is None:
            clock = transport_options.get("clock", time.time)
            transport = HttpTransport(
                config,
                auth=auth if auth is not None else self.default_auth(config),
                rate_limiter=rate_limiter
                or SlidingWindowRateLimiter(config.requests_per_minute, clock=clock),
                vendor=self.vendor,
                **transport_options,
            )
        self.transport = transport

    def default_auth(self, config: ClientConfig) -> AuthStrategy:
        """The auth strategy used when none is injected; vendors override this."""
        return NoAuth()

    @abstractmethod
    def build_request(self, query: QueryT, cursor: str | None) -> RequestSpec:
        """The request for ``query``'s page at ``cursor`` (``None`` for the first page)."""

    @abstractmethod
    def next_cursor(self, page: Page) -> str | None:
        """The cursor of the page after ``page``, or ``None`` when ``page`` is the last."""

    @abstractmethod
    def parse_page(self, page: Page, query: QueryT) -> pa.Table:
        """The rows of ``page`` as a table with :attr:`dataset`'s schema."""

    def explain(self, error: ApiError) -> ConnectorError:
        """The error to raise for a rejected request; vendors turn known rejections into
        clearer errors. A 401 always means the credentials: say which variables to check."""
        if error.status != 401:
            return error
        variables = self.credential_variables
        if variables:
            state = ", ".join(
                f"{name} {'is set' if os.environ.get(name) else 'is NOT set'}" for name in variables
            )
            check = f"check {' and '.join(variables)} ({state})"
        else:
            check = "check the credentials this client was given"
        return AuthenticationError(
            401,
            f"{self.vendor} refused the API credentials ({error.message}): {check}; "
            "nothing was retried, and this run asks with them no more",
            error.endpoint,
        )

    def send(self, spec: RequestSpec) -> Response:
        """Send one request through the shared transport, with vendor-explained rejections."""
        try:
            return self.transport.send(spec)
        except ApiError as error:
            raise self.explain(error) from None

    async def asend(self, spec: RequestSpec) -> Response:
        """Async twin of :meth:`send`."""
        try:
            return await self.transport.asend(spec)
        except ApiError as error:
            raise self.explain(error) from None

    def unknown_symbols(self, symbols: tuple[str, ...], query: QueryT) -> set[str]:
        """Which of ``symbols`` the vendor does not know; vendors that cannot tell say none."""
        return set()

    def expects_bars(self, symbol: str, day: dt.date) -> bool:
        """Whether the vendor's reference data says ``symbol`` traded on ``day``, so that an
        answer without bars is suspect rather than an empty day; vendors that cannot tell
        say no."""
        return False

    def paginate(self, query: QueryT) -> Iterator[Page]:
        """Yield raw pages until :meth:`next_cursor` returns ``None``."""
        pagination = _Pagination(self, query)
        while (spec := pagination.next_request()) is not None:
            yield pagination.record(spec, self.send(spec))

    async def apaginate(self, query: QueryT) -> AsyncIterator[Page]:
        """Async twin of :meth:`paginate`."""
        pagination = _Pagination(self, query)
        while (spec := pagination.next_request()) is not None:
            yield pagination.record(spec, await self.asend(spec))

    def fetch_batch(self, query: QueryT) -> Iterator[pa.Table]:
        """Stream parsed rows page by page.

        The next page is requested and parsed in a worker thread while the caller works on
        the current one, and no further: at most two pages are held, the caller's and the next.
        """
        ahead = ReadAhead(self._parsed_pages(query))
        try:
            yield from ahead
        finally:
            ahead.close()

    def _parsed_pages(self, query: QueryT) -> Iterator[pa.Table]:
        for page in self.paginate(query):
            table = self._parsed(page, query)
            del page  # the decoded page is the bulk of memory; free it before the next request
            yield table

    async def async_fetch_batch(self, query: QueryT) -> AsyncIterator[pa.Table]:
        """Async twin of :meth:`fetch_batch`, yielding the same tables."""
        async for page in self.apaginate(query):
            yield self._parsed(page, query)

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()

    def __enter__(self) -> BaseApiClient[QueryT]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _parsed(self, page: Page, query: QueryT) -> pa.Table:
        table = self.parse_page(page, query)
        response = page.response
        self.transport.metrics.page(self.vendor, page.request.name, table.num_rows)
        logger.info(
            "page %d: %d rows in %d attempt(s)",
            page.number,
            table.num_rows,
            response.attempts,
            extra={
                "event": "request",
                "vendor": self.vendor,
                "endpoint": page.request.name,
                "status": response.status,
                "attempt": response.attempts,
                "latency_ms": round(response.elapsed_seconds * 1000, 2),
                "bytes": response.body_bytes,
                "rows": table.num_rows,
                "page": page.number,
            },
        )
        return table
