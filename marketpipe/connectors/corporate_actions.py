"""Alpaca corporate actions (``GET /v1/corporate-actions``): requests and page parsing.

A second data set through the same ``BaseApiClient``: the same transport, retries, rate
budget and auth as the bars. A page groups records by kind (``forward_splits``,
``cash_dividends`` ...); each becomes one canonical :class:`CorporateAction` row. Kinds this
module does not know are kept (their ``type`` is the group name in singular, ``raw`` holds
the record); a record without an id, a symbol or a valid date is rejected with the reason,
and the page with it, so nothing is half-stored.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from marketpipe.connectors.alpaca import AlpacaDataClient
from marketpipe.connectors.base_api_client import Page
from marketpipe.connectors.errors import ResponseFormatError
from marketpipe.connectors.models import (
    CORPORATE_ACTIONS,
    CORPORATE_ACTIONS_SCHEMA,
    CorporateAction,
    Symbol,
)
from marketpipe.connectors.transport import RequestSpec

MAX_PAGE = 1000  # Alpaca's largest `limit` for corporate actions, counted across symbols
# Group key in the response -> the kind's name (also the value of the `types` parameter).
KINDS = {
    "forward_splits": "forward_split",
    "reverse_splits": "reverse_split",
    "unit_splits": "unit_split",
    "stock_dividends": "stock_dividend",
    "cash_dividends": "cash_dividend",
    "spin_offs": "spin_off",
    "cash_mergers": "cash_merger",
    "stock_mergers": "stock_merger",
    "stock_and_cash_mergers": "stock_and_cash_merger",
    "redemptions": "redemption",
    "name_changes": "name_change",
    "worthless_removals": "worthless_removal",
    "rights_distributions": "rights_distribution",
}
# Where each canonical column is found, by preference; the kinds name them differently.
_SYMBOL_KEYS = ("symbol", "source_symbol", "old_symbol", "acquiree_symbol")
_EX_DATE_KEYS = ("ex_date", "effective_date")
_OLD_RATE_KEYS = ("old_rate", "source_rate", "acquiree_rate")
_NEW_RATE_KEYS = ("new_rate", "acquirer_rate")
_NEW_SYMBOL_KEYS = ("new_symbol", "acquirer_symbol")


class CorporateActionsQuery(BaseModel):
    """Which corporate actions to fetch: symbols, kinds, and a ``process_date`` range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbols: tuple[Symbol, ...] = Field(min_length=1, description="Tickers to ask about")
    start: dt.date = Field(description="First process date (inclusive)")
    end: dt.date = Field(description="Last process date (inclusive)")
    types: tuple[str, ...] = Field((), description="Kinds to fetch (default: all)")

    @model_validator(mode="after")
    def _check(self) -> CorporateActionsQuery:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        unknown = sorted(set(self.types) - set(KINDS.values()))
        if unknown:
            raise ValueError(
                f"unknown corporate action type(s) {unknown}; use {sorted(KINDS.values())}"
            )
        return self


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((record[key] for key in keys if record.get(key) is not None), None)


def action_row(kind: str, record: Any) -> dict[str, Any]:
    """One vendor record as a validated :class:`CorporateAction` row (a dict)."""
    if not isinstance(record, dict):
        raise ValueError(f"a {kind} record is not an object")
    fields = {
        "id": record.get("id"),
        "type": kind,
        "symbol": _first(record, _SYMBOL_KEYS),
        "process_date": record.get("process_date"),
        "ex_date": _first(record, _EX_DATE_KEYS),
        "record_date": record.get("record_date"),
        "payable_date": record.get("payable_date"),
        "old_rate": _first(record, _OLD_RATE_KEYS),
        "new_rate": _first(record, _NEW_RATE_KEYS),
        "rate": record.get("rate"),
        "new_symbol": _first(record, _NEW_SYMBOL_KEYS),
        "raw": orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode(),
    }
    try:
        return CorporateAction.model_validate(fields).model_dump()
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"{kind} record {record.get('id')!r} is malformed ({reasons})") from None


class CorporateActionsClient(AlpacaDataClient[CorporateActionsQuery]):
    """Alpaca Market Data ``GET /v1/corporate-actions`` (same host and keys as the bars)."""

    dataset = CORPORATE_ACTIONS

    def build_request(self, query: CorporateActionsQuery, cursor: str | None) -> RequestSpec:
        """The request for ``query``'s page at ``cursor``, oldest process date first."""
        params = [
            ("symbols", ",".join(query.symbols)),
            ("start", query.start.isoformat()),
            ("end", query.end.isoformat()),
            ("limit", str(min(self.config.page_size, MAX_PAGE))),
            ("sort", "asc"),
        ]
        if query.types:
            params.append(("types", ",".join(query.types)))
        if cursor is not None:
            params.append(("page_token", cursor))
        return RequestSpec(
            path="/v1/corporate-actions", params=tuple(params), endpoint="corporate-actions"
        )

    def parse_page(self, page: Page, query: CorporateActionsQuery) -> pa.Table:
        """Every record of every group, as canonical rows; unknown kinds kept."""
        where = f"{page.request.name} page {page.number}"
        payload = page.payload
        groups = payload.get("corporate_actions") if isinstance(payload, dict) else None
        if not isinstance(groups, dict):
            raise ResponseFormatError(f"{where}: expected a 'corporate_actions' object")
        rows = []
        for group, records in sorted(groups.items()):
            if records is None:
                continue
            if not isinstance(records, list):
                raise ResponseFormatError(f"{where}: {group} is not a list")
            kind = KINDS.get(group, group.removesuffix("s"))
            try:
                rows.extend(action_row(kind, record) for record in records)
            except ValueError as exc:
                raise ResponseFormatError(f"{where}: {exc}") from None
        return pa.Table.from_pylist(rows, schema=CORPORATE_ACTIONS_SCHEMA)
