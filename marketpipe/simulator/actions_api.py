"""``/v1/corporate-actions`` of the simulated vendor: filters, ordering and paging as Alpaca's."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from marketpipe.simulator.wire import BadRequest, parse_day


def corporate_actions_page(
    query: list[tuple[str, str]],
    records: Sequence[tuple[str, dict[str, Any]]],
    today: dt.date,
) -> tuple[dict[str, Any], int]:
    """``/v1/corporate-actions``: the configured records matching symbols, types and a
    ``process_date`` range, oldest first, ``limit`` records per page across groups; a
    record exists from its process date on (New York)."""
    params = dict(query)
    allowed = {
        "symbols",
        "cusips",
        "types",
        "start",
        "end",
        "ids",
        "limit",
        "page_token",
        "sort",
        "region",
        "data_quality",
    }
    unexpected = sorted(set(params) - allowed)
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    symbols = {s.strip() for s in params.get("symbols", "").split(",") if s.strip()}
    if not symbols:
        raise BadRequest("one of symbols, cusips or ids is required")
    types = {t.strip() for t in params.get("types", "").split(",") if t.strip()}
    start = parse_day(params.get("start"), "start") or today
    end = parse_day(params.get("end"), "end") or today
    if end < start:
        raise BadRequest("end should not be before start")
    try:
        limit = int(params.get("limit", 100))
    except ValueError:
        raise BadRequest("invalid limit") from None
    if not 1 <= limit <= 1000:
        raise BadRequest("invalid limit: must be between 1 and 1000")
    if params.get("sort", "asc") not in ("asc", "desc"):
        raise BadRequest(f"invalid sort: {params['sort']}")
    matching = sorted(
        (
            (group, record)
            for group, record in records
            if _action_symbols(record) & symbols
            and (not types or group.removesuffix("s") in types)
            and start.isoformat() <= str(record.get("process_date")) <= end.isoformat()
            # The vendor knows an action from its process date on.
            and str(record.get("process_date")) <= today.isoformat()
        ),
        key=lambda item: (str(item[1].get("process_date")), str(item[1].get("id"))),
        reverse=params.get("sort") == "desc",
    )
    identity = "|".join(
        params.get(name, "") for name in ("symbols", "types", "start", "end", "sort")
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    offset = _action_offset(params.get("page_token"), digest) if "page_token" in params else 0
    page = matching[offset : offset + limit]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for group, record in page:
        grouped.setdefault(group, []).append(record)
    more = offset + limit < len(matching)
    token = base64.b64encode(f"{offset + limit}|{digest}".encode()).decode() if more else None
    return {"corporate_actions": grouped, "next_page_token": token}, len(page)


def _action_symbols(record: dict[str, Any]) -> set[str]:
    """Every symbol a corporate action record names (old, new, source, acquirer ...)."""
    return {str(value) for key, value in record.items() if key.endswith("symbol") and value}


def _action_offset(token: str | None, digest: str) -> int:
    try:
        offset, token_digest = base64.b64decode(token or "", validate=True).decode().split("|")
        position = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page_token") from None
    if token_digest != digest or position < 0:
        raise BadRequest("invalid page_token: it belongs to a different query")
    return position
