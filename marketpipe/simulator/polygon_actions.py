"""Massive/Polygon splits and dividends, served from the same corporate actions as Alpaca's.

- ``GET /v3/reference/splits``: ``{"id", "execution_date", "split_from", "split_to",
  "ticker"}`` from each forward or reverse split (``split_from`` old shares, ``split_to``
  new), filtered by ``ticker``, ``execution_date`` (and ``.gte``/``.gt``/``.lte``/``.lt``)
  and ``reverse_split``.
- ``GET /v3/reference/dividends``: ``{"id", "cash_amount", "currency", "dividend_type"
  (CD regular, SC special), "ex_dividend_date", "frequency", "pay_date", "record_date",
  "ticker"}`` from each cash dividend, filtered by ``ticker``, ``ex_dividend_date``,
  ``record_date``, ``pay_date`` (and their ranges) and ``dividend_type``. Stock dividends
  are not served there (Massive lists cash dividends only).

Both: ``order`` (``asc``/``desc``, default ``desc``), ``sort`` (a date field), ``limit``
(default 10, at most 1,000), ``next_url`` with an opaque cursor; a record is known from its
``process_date`` on (the vendor's knowledge date in the shared truth). Ids are Massive-like
(``E`` and 64 hex digits), derived from the action's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from marketpipe.simulator.massive_paging import offset_page, requested_limit, with_carried
from marketpipe.simulator.wire import BadRequest, parse_day

KINDS = ("splits", "dividends")
MAX_LIMIT = 1_000
DEFAULT_LIMIT = 10
_DATES = {
    "splits": ("execution_date",),
    "dividends": ("ex_dividend_date", "record_date", "pay_date", "declaration_date"),
}
_RANGES = ("", ".gte", ".gt", ".lte", ".lt")


def is_polygon_actions_path(parts: list[str]) -> bool:
    """Whether a path asks for Massive's splits or dividends."""
    return len(parts) == 3 and parts[:2] == ["v3", "reference"] and parts[2] in KINDS


def _massive_id(kind: str, record: dict[str, Any]) -> str:
    return "E" + hashlib.sha256(f"{kind}|{record.get('id')}".encode()).hexdigest()


def polygon_records(
    records: Sequence[tuple[str, dict[str, Any]]], kind: str
) -> list[tuple[str, dict[str, Any]]]:
    """``(process_date, Massive record)`` of each action of ``kind`` in Alpaca's shape."""
    found = []
    for group, record in records:
        known = str(record.get("process_date"))
        if kind == "splits" and group in ("forward_splits", "reverse_splits"):
            item = {
                "execution_date": record.get("ex_date"),
                "id": _massive_id(kind, record),
                "split_from": record.get("old_rate"),
                "split_to": record.get("new_rate"),
                "ticker": record.get("symbol"),
            }
            found.append((known, item))
        elif kind == "dividends" and group == "cash_dividends":
            special = bool(record.get("special"))
            item = {
                "cash_amount": record.get("rate"),
                "currency": "USD",
                "dividend_type": "SC" if special else "CD",
                "ex_dividend_date": record.get("ex_date"),
                "frequency": 0 if special else 4,
                "id": _massive_id(kind, record),
                "pay_date": record.get("payable_date"),
                "record_date": record.get("record_date"),
                "ticker": record.get("symbol"),
            }
            found.append((known, {k: v for k, v in item.items() if v is not None}))
    return found


def _matches(item: dict[str, Any], params: dict[str, str], kind: str) -> bool:
    ticker = item.get("ticker")
    if "ticker" in params and ticker != params["ticker"]:
        return False
    for name in _DATES[kind]:
        value = str(item.get(name) or "")
        for suffix in _RANGES:
            bound = parse_day(params.get(name + suffix), name + suffix)
            if bound is None:
                continue
            text = bound.isoformat()
            if not value:
                return False
            if (
                (suffix == "" and value != text)
                or (suffix == ".gte" and value < text)
                or (suffix == ".gt" and value <= text)
                or (suffix == ".lte" and value > text)
                or (suffix == ".lt" and value >= text)
            ):
                return False
    if kind == "splits" and "reverse_split" in params:
        reverse = item["split_from"] > item["split_to"]
        if reverse != (params["reverse_split"].lower() == "true"):
            return False
    if kind == "dividends" and "dividend_type" in params:
        return item.get("dividend_type") == params["dividend_type"]
    return True


def actions_page(
    kind: str,
    query: list[tuple[str, str]],
    records: Sequence[tuple[str, dict[str, Any]]],
    today: dt.date,
    host: str,
    request_id: str,
) -> tuple[dict[str, Any], int]:
    """One page of Massive's splits or dividends known on ``today``."""
    params = with_carried(query)
    dates = [name + suffix for name in _DATES[kind] for suffix in _RANGES]
    allowed = {*dates, "ticker", "order", "sort", "limit", "apiKey", "offset"}
    allowed |= {"reverse_split"} if kind == "splits" else {"dividend_type"}
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    sort = params.get("sort", _DATES[kind][0])
    if sort not in (*_DATES[kind], "ticker"):
        raise BadRequest(f"invalid sort field: {sort}")
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise BadRequest(f"invalid order: {order}")
    limit = requested_limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    matching = sorted(
        (
            item
            for known, item in polygon_records(records, kind)
            if known <= today.isoformat() and _matches(item, params, kind)
        ),
        key=lambda item: (str(item.get(sort) or ""), item["id"]),
        reverse=order == "desc",
    )
    page, more = offset_page(matching, params, limit, host, f"/v3/reference/{kind}")
    payload: dict[str, Any] = {"results": page, "status": "OK", "request_id": request_id}
    if more is not None:
        payload["next_url"] = more
    return payload, len(page)
