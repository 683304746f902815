"""Building the security master from what each vendor says about a lake's symbols.

A symbol of the config names a security: the one that used the ticker on the range's last
day (``as_of``), or, for a ticker nobody used then, the one that used it last.

- **Massive / Polygon** says it in its reference data: ticker details as of that day
  (``composite_figi``, ``list_date``, ``delisted_utc``), the delisted tickers when nobody used
  it then, and the security's ``ticker_change`` events (each ticker from its date on).
- **Alpaca** has no listing history: what it says is in the corporate actions the lake
  already keeps for the symbol: ``name_change`` records (old and new symbol, process date)
  and a takeover or removal (``cash_merger``, ``stock_merger``, ``worthless_removal`` ...)
  that delisted it. Its securities are ``TICKER@first-date`` (or the bare ticker when no
  date is known), since Alpaca has no FIGI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from marketpipe.connectors.assets import Asset
from marketpipe.connectors.models import TradedAs
from marketpipe.connectors.polygon import PolygonClient
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.securities import (
    Security,
    TickerInterval,
    publish_securities,
    read_securities,
    securities_bytes,
    with_fresh_facts,
)
from marketpipe.markettime.calendar import NEW_YORK

POLYGON_ENDPOINT = "/v3/reference/tickers, /vX/reference/tickers/{id}/events"
ALPACA_ENDPOINT = "/v1/corporate-actions"
# Corporate actions after which a security no longer trades.
DELISTING_KINDS = frozenset(
    {"cash_merger", "stock_merger", "stock_and_cash_merger", "worthless_removal", "redemption"}
)
_ONE_DAY = dt.timedelta(days=1)
_HISTORY_STARTS = dt.date(2003, 1, 1)  # Polygon's point-in-time reference data


SecurityOf = Callable[[str, str | None], list[TickerInterval]]


def refresh_securities(
    lake: LakeStore | Path | str, symbols: Sequence[str], security_of: SecurityOf
) -> tuple[list[TickerInterval], bool]:
    """Ask again about ``symbols`` and publish the master if a fact changed; returns its
    rows and whether the file changed.

    ``security_of(symbol, pinned)`` asks the vendor about one symbol; ``pinned`` is the
    security the master already names for it: a symbol keeps naming the security its
    series was built from, also once another company takes its ticker up.
    """
    stored = read_securities(lake)
    pins = {row.symbol: row.security_id for row in stored}
    fresh = [interval for symbol in symbols for interval in security_of(symbol, pins.get(symbol))]
    rows = with_fresh_facts(stored, fresh, symbols)
    current = hashlib.sha256(securities_bytes(stored)).hexdigest() if stored else None
    _, changed = publish_securities(lake, rows, current)
    return rows, changed


def traded_as_now(security: Security, current: str, eve: dt.date) -> tuple[TradedAs, ...]:
    """``security``'s tickers with ``current`` (what its asset answers to today, which the
    master has not learned yet) in use from ``eve`` on: Alpaca maps the whole history to
    the ticker the security has on the ``asof``'s eve."""
    spans = list(security.traded_as())
    if spans and (spans[-1].last is None or spans[-1].last >= eve):
        spans[-1] = spans[-1].model_copy(update={"last": eve - _ONE_DAY})
    return (*spans, TradedAs(ticker=current, first=eve))


def is_asset_id(security_id: str) -> bool:
    """Whether a master's ``security_id`` is an Alpaca asset id (a UUID)."""
    try:
        uuid.UUID(security_id)
    except ValueError:
        return False
    return True


def learned_renames(
    stored: Sequence[TickerInterval], rows: Sequence[TickerInterval], symbols: Iterable[str]
) -> list[TickerInterval]:
    """The tickers ``rows`` name for ``symbols`` that ``stored`` did not: a rename learned
    since the master was last written (a symbol seen for the first time learns none)."""
    known: dict[str, set[str]] = {}
    for row in stored:
        known.setdefault(row.symbol, set()).add(row.ticker)
    asked = set(symbols)
    return [
        row
        for row in rows
        if row.symbol in asked and row.symbol in known and row.ticker not in known[row.symbol]
    ]


def polygon_security(
    client: PolygonClient,
    symbol: str,
    as_of: dt.date,
    asked_on: dt.date,
    pinned: str | None = None,
) -> list[TickerInterval]:
    """The ticker intervals of the security ``symbol`` names on ``as_of`` (or of the
    ``pinned`` composite FIGI), from Polygon's reference data (none when the vendor never
    heard of the ticker)."""
    details = _pinned_details(client, pinned, as_of) if pinned else None
    if details is None:
        details = client.ticker_details(symbol, as_of)
    if details is None:
        details = _last_user(client, symbol, as_of)
    if details is None:
        return []
    figi = details.get("composite_figi") or None
    events = client.ticker_events(figi or symbol)
    listed = _date(details.get("list_date"))
    delisted = _new_york_date(details.get("delisted_utc"))
    changes = sorted(
        (day, str(event["ticker_change"]["ticker"]))
        for event in (events or {}).get("events", [])
        if event.get("type") == "ticker_change"
        and isinstance(event.get("ticker_change"), dict)
        and (day := _date(event.get("date"))) is not None
    )
    if not changes:
        changes = [(listed, symbol)] if listed is not None else [(None, symbol)]
    first_day, first_ticker = changes[0]
    security_id = figi or _plain_id(first_ticker, listed or first_day)
    name = details.get("name") or (events or {}).get("name")
    return _intervals(
        symbol,
        security_id,
        changes,
        listed or first_day,
        delisted,
        name,
        ("polygon", POLYGON_ENDPOINT, asked_on),
    )


def _pinned_details(client: PolygonClient, figi: str, as_of: dt.date) -> dict[str, Any] | None:
    """The details of the security with composite FIGI ``figi`` under its ticker on
    ``as_of`` (also once delisted); ``None`` when the vendor cannot find it."""
    events = client.ticker_events(figi)
    tickers = [
        str(event["ticker_change"]["ticker"])
        for event in (events or {}).get("events", [])
        if event.get("type") == "ticker_change" and isinstance(event.get("ticker_change"), dict)
    ]
    for ticker in reversed(tickers):
        details = client.ticker_details(ticker, as_of)
        if details is not None and details.get("composite_figi") == figi:
            return details
        for listing in client.delisted_listings(ticker):
            if listing.get("composite_figi") == figi:
                return listing
    return None


def alpaca_security(
    actions: pa.Table | None,
    symbol: str,
    asked_on: dt.date,
    vendor: str = "alpaca",
    asset_of: Callable[[str], Asset | None] | None = None,
    pinned: str | None = None,
) -> list[TickerInterval]:
    """The ticker intervals of ``symbol``'s security from its stored corporate actions: the
    renames that name it (one step back and forth) and the action that delisted it.

    ``asset_of`` asks Alpaca's assets what a ticker names today: the security's id (the
    asset's, kept across symbol changes), its name, and whether a ticker renamed away was
    taken up by another company since. Then the symbol names the newcomer, unless the
    master is ``pinned`` to the renamed security already.
    """
    records = [_raw(row) for row in (actions.to_pylist() if actions is not None else [])]
    renames = sorted(
        (day, str(record.get("old_symbol")), str(record.get("new_symbol")))
        for kind, record in records
        if kind == "name_change"
        and (day := _date(record.get("process_date"))) is not None
        and record.get("old_symbol")
        and record.get("new_symbol")
    )
    changes: list[tuple[dt.date | None, str]] = [(None, symbol)]
    for day, old, new in renames:
        if new == changes[0][1] and (changes[0][0] is None or day < changes[0][0]):
            changes = [(None, old), (day, new), *changes[1:]]
        elif old == changes[-1][1] and (changes[-1][0] is None or day > changes[-1][0]):
            changes.append((day, new))
    last = changes[-1][1]
    asset = asset_of(last) if asset_of is not None else None
    if asset_of is not None and asset is None and not records:
        return []  # no asset and no corporate action: Alpaca knows no such symbol
    if last != symbol and asset_of is not None:
        holder = asset_of(symbol)
        taken_up = holder is not None and (asset is None or holder.id != asset.id)
        if holder is not None and taken_up and pinned in (None, holder.id):
            changes, last, asset = [(None, symbol)], symbol, holder
    delisted = min(
        (
            day
            for kind, record in records
            if kind in DELISTING_KINDS
            and last in (record.get("acquiree_symbol"), record.get("symbol"))
            and (day := _date(record.get("effective_date") or record.get("process_date")))
        ),
        default=None,
    )
    security_id = asset.id if asset is not None else _plain_id(changes[0][1], changes[0][0])
    endpoint = ALPACA_ENDPOINT if asset_of is None else f"{ALPACA_ENDPOINT}, /v2/assets"
    name = asset.name if asset is not None else None
    return _intervals(
        symbol, security_id, changes, None, delisted, name, (vendor, endpoint, asked_on)
    )


def _intervals(
    symbol: str,
    security_id: str,
    changes: Sequence[tuple[dt.date | None, str]],
    listed: dt.date | None,
    delisted: dt.date | None,
    name: str | None,
    source: tuple[str, str, dt.date],
) -> list[TickerInterval]:
    """One interval per ticker change: each runs until the day before the next."""
    vendor, endpoint, asked_on = source
    following: Iterable[dt.date | None] = [day for day, _ in changes[1:]] + [None]
    return [
        TickerInterval(
            symbol=symbol,
            security_id=security_id,
            ticker=ticker,
            valid_from=day,
            valid_to=None if until is None else until - _ONE_DAY,
            listed=listed,
            delisted=delisted,
            name=name,
            vendor=vendor,
            endpoint=endpoint,
            asked_on=asked_on,
        )
        for (day, ticker), until in zip(changes, following, strict=True)
    ]


def _last_user(client: PolygonClient, symbol: str, as_of: dt.date) -> dict[str, Any] | None:
    """The details of the security that used ``symbol`` last before ``as_of``, when nobody
    used it then: a delisted one, or one that moved on to another ticker. Polygon's point in
    time details are asked ever further back (1, 2, 4 ... days: a dozen requests reach
    2003, where its history starts)."""
    delisted = _last_delisted(client.delisted_listings(symbol), as_of)
    left = _new_york_date(delisted.get("delisted_utc")) if delisted else None
    step = 1
    while (day := as_of - dt.timedelta(days=step)) >= max(_HISTORY_STARTS, left or dt.date.min):
        details = client.ticker_details(symbol, day)
        if details is not None:
            return details
        step *= 2
    return delisted


def _last_delisted(listings: list[dict[str, Any]], as_of: dt.date) -> dict[str, Any] | None:
    """The listing delisted last on or before ``as_of`` (a ticker nobody uses then)."""
    dated = [
        (day, listing)
        for listing in listings
        if (day := _new_york_date(listing.get("delisted_utc"))) is not None and day <= as_of
    ]
    return max(dated, key=lambda pair: pair[0])[1] if dated else None


def _raw(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        record = orjson.loads(row.get("raw") or "{}")
    except orjson.JSONDecodeError:
        record = {}
    return str(row.get("type")), record if isinstance(record, dict) else {}


def _plain_id(ticker: str, first: dt.date | None) -> str:
    return f"{ticker}@{first.isoformat()}" if first is not None else ticker


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _new_york_date(value: Any) -> dt.date | None:
    """The New York day of an RFC-3339 instant such as ``delisted_utc``."""
    if not value:
        return None
    try:
        instant = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if instant.tzinfo is None:
        return None
    return instant.astimezone(NEW_YORK).date()
