"""Massive (Polygon.io) trades and quotes: ``GET /v3/trades/{ticker}`` and
``/v3/quotes/{ticker}`` on the shared transport, as the same canonical rows as Alpaca's.

One ticker per request (a query's symbols are streamed in turn), bounded by
``timestamp.gte``/``timestamp.lte`` in nanoseconds, ``order=asc`` and ``sort=timestamp``
sent explicitly (the vendor's default order is newest first), ``limit`` at most 50,000, and
``next_url`` followed until it is absent. Field mapping: ``sip_timestamp`` is the
timestamp; ``exchange`` and ``conditions`` are Massive's numeric IDs, kept as text (its
``/v3/reference/exchanges`` and ``/v3/reference/conditions`` say what each means; the file's
footer names the vendor); ``id`` is text on the wire and must be digits; ``tape`` 1/2/3 is
A/B/C.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import pyarrow as pa

from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.polygon import PolygonApiClient
from marketpipe.connectors.ticks import QUOTES, QUOTES_SCHEMA, TRADES, TRADES_SCHEMA, TicksQuery
from marketpipe.connectors.transport import RequestSpec

POLYGON_TICK_LIMIT = 50_000  # the vendor's largest trades or quotes page
_TAPES = {1: "A", 2: "B", 3: "C"}


def _ns(moment: Any) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _text_ids(values: list[Any]) -> list[str | None]:
    return [None if value is None else str(value) for value in values]


def _int_ids(values: list[Any]) -> list[int]:
    if not all(isinstance(value, str) and value.isdigit() for value in values):
        bad = next(v for v in values if not (isinstance(v, str) and v.isdigit()))
        raise ValueError(f"trade id {bad!r} is not a number")
    return [int(value) for value in values]


def _conditions(values: list[Any]) -> list[list[str]]:
    return [[str(code) for code in value] if value else [] for value in values]


def _tapes(values: list[Any]) -> list[str | None]:
    return [_TAPES.get(value) for value in values]


# Each canonical column: the wire field and how its values become the column's.
_Convert = Callable[[list[Any]], list[Any]]
_COLUMNS: dict[str, dict[str, tuple[str, _Convert | None]]] = {
    "trades": {
        "price": ("price", None),
        "size": ("size", None),
        "exchange": ("exchange", _text_ids),
        "id": ("id", _int_ids),
        "conditions": ("conditions", _conditions),
        "tape": ("tape", _tapes),
    },
    "quotes": {
        "bid_price": ("bid_price", None),
        "bid_size": ("bid_size", None),
        "bid_exchange": ("bid_exchange", _text_ids),
        "ask_price": ("ask_price", None),
        "ask_size": ("ask_size", None),
        "ask_exchange": ("ask_exchange", _text_ids),
        "conditions": ("conditions", _conditions),
        "tape": ("tape", _tapes),
    },
}
_OPTIONAL = frozenset({"conditions", "tape"})


def polygon_ticks_table(
    kind: Literal["trades", "quotes"], symbol: str, rows: list[Any], where: str
) -> pa.Table:
    """A canonical trades or quotes table of ``symbol`` from a page's ``results``."""
    schema = TRADES_SCHEMA if kind == "trades" else QUOTES_SCHEMA
    try:
        stamps = pa.array([row["sip_timestamp"] for row in rows], pa.int64())
        arrays = [
            pa.array([symbol] * len(rows), pa.string()),
            stamps.cast(schema.field("timestamp").type),
        ]
        for name, (field, convert) in _COLUMNS[kind].items():
            if field in _OPTIONAL:
                values = [row.get(field) for row in rows]
            else:
                values = [row[field] for row in rows]
            arrays.append(pa.array(convert(values) if convert else values, schema.field(name).type))
    except KeyError as exc:
        raise ResponseFormatError(f"{where}: a {kind[:-1]} lacks field {exc}") from None
    except (TypeError, AttributeError, ValueError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResponseFormatError(f"{where}: a {kind[:-1]} is malformed: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


class _PolygonTicksClient(PolygonApiClient[TicksQuery]):
    """What Massive's trades and quotes endpoints share."""

    kind: ClassVar[Literal["trades", "quotes"]]

    def build_request(self, query: TicksQuery, cursor: str | None) -> RequestSpec:
        """The first request of the query's (one) symbol, or the page ``cursor`` names."""
        endpoint = f"v3/{self.kind}"
        if query.feed != "sip":
            raise ValueError(f"feed {query.feed}: Massive serves the consolidated tape (sip) only")
        if cursor is not None:
            return self.continued(cursor, endpoint)
        (symbol,) = query.symbols
        params = (
            ("timestamp.gte", str(_ns(query.start))),
            ("timestamp.lte", str(_ns(query.end))),
            ("order", "asc"),
            ("sort", "timestamp"),
            ("limit", str(min(self.config.page_size, POLYGON_TICK_LIMIT))),
        )
        return RequestSpec(path=f"/v3/{self.kind}/{symbol}", params=params, endpoint=endpoint)

    def next_cursor(self, page: Page) -> str | None:
        """``next_url``'s path and query; ``None`` at the end."""
        return self.next_path(page, f"/v3/{self.kind}/", self.kind)

    def parse_page(self, page: Page, query: TicksQuery) -> pa.Table:
        """The page's ``results`` as canonical rows (absent ``results``: none)."""
        where = f"{self.kind} page {page.number}"
        _, rows = self.page_results(page, self.kind)
        symbol = page.request.path.rstrip("/").split("/")[-1]
        return polygon_ticks_table(self.kind, symbol, rows, where)


class PolygonTradesClient(_PolygonTicksClient):
    """Massive's historical trades (``GET /v3/trades/{ticker}``)."""

    dataset = TRADES
    kind = "trades"


class PolygonQuotesClient(_PolygonTicksClient):
    """Massive's historical quotes (``GET /v3/quotes/{ticker}``)."""

    dataset = QUOTES
    kind = "quotes"
