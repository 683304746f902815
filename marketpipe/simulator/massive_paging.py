"""What Massive's simulated endpoints share on the wire: an opaque ``cursor`` carrying the
query (never the key), an absolute ``next_url`` on the server that answered, ``limit``
bounds, and pages cut from a list by offset."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from marketpipe.simulator.wire import BadRequest

Item = TypeVar("Item")


def encode_cursor(params: Mapping[str, str]) -> str:
    """An opaque ``next_url`` cursor carrying ``params`` (base64 of a query string)."""
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, str]:
    """The parameters a cursor carries, or a 400 for a broken one."""
    try:
        return dict(parse_qsl(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid cursor") from None


def with_carried(query: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The request's parameters: those its ``cursor`` carries, then the others it names."""
    given = dict(query)
    carried = decode_cursor(given["cursor"]) if given.get("cursor") else {}
    return {**carried, **{name: value for name, value in given.items() if name != "cursor"}}


def next_url(host: str, path: str, state: Mapping[str, str]) -> str:
    """An absolute ``next_url`` on ``host`` whose one parameter, the cursor, carries
    ``state`` (without the key)."""
    carried = {name: value for name, value in state.items() if name != "apiKey"}
    return f"http://{host}{path}?{urlencode({'cursor': encode_cursor(carried)})}"


def requested_limit(params: Mapping[str, str], default: int, most: int) -> int:
    """``limit`` (``default`` when absent), or a 400 naming the bounds."""
    text = params.get("limit", str(default))
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise BadRequest(f"limit must be between 1 and {most}, got {text}")
    return int(text)


def offset_page(
    items: Sequence[Item], params: Mapping[str, str], limit: int, host: str, path: str
) -> tuple[list[Item], str | None]:
    """The page of ``items`` at the cursor's offset, and the ``next_url`` of the rest."""
    offset = int(params.get("offset", "0"))
    more = offset + limit < len(items)
    state: dict[str, Any] = {**params, "offset": str(offset + limit)}
    return list(items[offset : offset + limit]), next_url(host, path, state) if more else None
