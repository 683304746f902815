"""Massive (Polygon.io) splits and dividends (``GET /v3/reference/splits`` and
``/v3/reference/dividends``) as the canonical corporate-action rows Alpaca's become.

One ticker per request (``ticker``), ``order=asc``, ``limit`` up to 1,000 (the configured
page size if smaller), ``next_url`` followed.
A split is a ``forward_split`` (``split_to`` above ``split_from``) or a ``reverse_split``
with ``old_rate = split_from`` and ``new_rate = split_to``; a dividend is a
``cash_dividend`` with ``rate = cash_amount`` (``SC`` special ones too). Massive keeps no
processing date: ``process_date`` is the date the query's window selects on
(``execution_date``, ``ex_dividend_date``), so a recheck of a recent window asks again about
what it stored. The record as sent is kept in ``raw``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, ClassVar

import orjson
import pyarrow as pa

from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.corporate_actions import CorporateActionsQuery
from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.models import (
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_SCHEMA,
    CorporateAction,
)
from marketpipe.connectors.polygon import PolygonApiClient, PolygonConfig
from marketpipe.connectors.transport import RequestSpec

MAX_PAGE = 1_000  # Massive's largest reference page


def split_row(record: dict[str, Any]) -> dict[str, Any]:
    """A Massive split as a canonical row."""
    old, new = record["split_from"], record["split_to"]
    return {
        "id": str(record["id"]),
        "type": "forward_split" if new > old else "reverse_split",
        "symbol": record["ticker"],
        "process_date": record["execution_date"],
        "ex_date": record["execution_date"],
        "record_date": None,
        "payable_date": None,
        "old_rate": float(old),
        "new_rate": float(new),
        "rate": None,
        "new_symbol": None,
    }


def dividend_row(record: dict[str, Any]) -> dict[str, Any]:
    """A Massive cash dividend as a canonical row."""
    return {
        "id": str(record["id"]),
        "type": "cash_dividend",
        "symbol": record["ticker"],
        "process_date": record["ex_dividend_date"],
        "ex_date": record["ex_dividend_date"],
        "record_date": record.get("record_date"),
        "payable_date": record.get("pay_date"),
        "old_rate": None,
        "new_rate": None,
        "rate": float(record["cash_amount"]),
        "new_symbol": None,
    }


class _PolygonActionsClient(PolygonApiClient[CorporateActionsQuery]):
    """What Massive's splits and dividends endpoints share."""

    dataset = CORPORATE_ACTIONS
    name: ClassVar[str]  # splits or dividends
    date_field: ClassVar[str]
    kinds: ClassVar[frozenset[str]]  # the canonical types it serves

    def wanted(self, query: CorporateActionsQuery) -> bool:
        """Whether ``query`` asks for any kind this endpoint serves."""
        return not query.types or bool(self.kinds & set(query.types))

    def build_request(self, query: CorporateActionsQuery, cursor: str | None) -> RequestSpec:
        """The first request of the query's (one) symbol, or the page ``cursor`` names."""
        path = f"/v3/reference/{self.name}"
        if cursor is not None:
            return self.continued(cursor, self.name)
        params = (
            ("ticker", query.symbols[0]),
            (f"{self.date_field}.gte", query.start.isoformat()),
            (f"{self.date_field}.lte", query.end.isoformat()),
            ("order", "asc"),
            ("sort", self.date_field),
            ("limit", str(min(self.config.page_size, MAX_PAGE))),
        )
        return RequestSpec(path=path, params=params, endpoint=self.name)

    def next_cursor(self, page: Page) -> str | None:
        """``next_url``'s path and query; ``None`` at the end."""
        return self.next_path(page, f"/v3/reference/{self.name}", self.name)

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        """One record as a canonical row (without ``raw``)."""
        raise NotImplementedError

    def parse_page(self, page: Page, query: CorporateActionsQuery) -> pa.Table:
        """The page's ``results`` as canonical rows; a malformed record fails the page."""
        where = f"{self.name} page {page.number}"
        _, records = self.page_results(page, self.name)
        rows = []
        for record in records:
            try:
                raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode()
                row = CorporateAction.model_validate({**self.row(record), "raw": raw})
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                what = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise ResponseFormatError(
                    f"{where}: a {self.name[:-1]} record is malformed ({what}): {raw:.200}"
                ) from None
            rows.append(row.model_dump())
        try:
            return pa.Table.from_pylist(rows, schema=CORPORATE_ACTIONS_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ResponseFormatError(f"{where}: a record has a malformed value: {exc}") from None


class PolygonSplitsClient(_PolygonActionsClient):
    """Massive's splits (``GET /v3/reference/splits``)."""

    name = "splits"
    date_field = "execution_date"
    kinds = frozenset({"forward_split", "reverse_split"})

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        """A split as a canonical row."""
        return split_row(record)


class PolygonDividendsClient(_PolygonActionsClient):
    """Massive's cash dividends (``GET /v3/reference/dividends``)."""

    name = "dividends"
    date_field = "ex_dividend_date"
    kinds = frozenset({"cash_dividend"})

    def row(self, record: dict[str, Any]) -> dict[str, Any]:
        """A dividend as a canonical row."""
        return dividend_row(record)


class PolygonCorporateActionsClient:
    """Massive's splits and dividends behind the interface of Alpaca's corporate actions:
    ``fetch_batch(CorporateActionsQuery)`` yields canonical tables, splits first."""

    vendor: ClassVar[str] = "polygon"

    def __init__(self, config: PolygonConfig, **options: Any) -> None:
        self._stack = ExitStack()
        self.endpoints = (
            self._stack.enter_context(PolygonSplitsClient(config, **options)),
            self._stack.enter_context(PolygonDividendsClient(config, **options)),
        )

    def fetch_batch(self, query: CorporateActionsQuery) -> Iterator[pa.Table]:
        """The query's actions, a table per page."""
        for endpoint in self.endpoints:
            if endpoint.wanted(query):
                yield from endpoint.fetch_batch(query)

    def close(self) -> None:
        """Close both endpoints' connections."""
        self._stack.close()

    def __enter__(self) -> PolygonCorporateActionsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
