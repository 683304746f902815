"""Alpaca's view of the simulated securities: ``/v2/assets`` and ``name_changes`` records.

- ``GET /v2/assets/{symbol_or_asset_id}``: the asset a symbol names today (``status``
  ``active``, or ``inactive`` once delisted); a renamed asset keeps its id and answers to its
  new symbol only; ``404 {"code": 40410000, "message": "asset not found for X"}`` otherwise
  (the message text is unconfirmed).
- ``GET /v2/assets?status=active|inactive``: the book's assets, and the plain tickers it is
  told to list (plain tickers are countless; the real list names every asset).
- ``name_changes`` corporate actions (``old_symbol``, ``old_cusip``, ``new_symbol``,
  ``new_cusip``, ``process_date``: the first session under the new symbol), as alpaca-py's
  ``NameChange`` reads them; a symbol-only change keeps the CUSIP. A delisting is a
  ``cash_mergers`` record (taken over for cash) or a ``worthless_removals`` one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

from marketpipe.simulator.securities import SecurityBook, SimulatedSecurity, plain_ticker_exists
from marketpipe.simulator.wire import BadRequest

ASSET_NOT_FOUND_CODE = 40410000


def is_assets_path(parts: list[str]) -> bool:
    """Whether a request path asks for assets."""
    return parts[:2] == ["v2", "assets"] and len(parts) in (2, 3)


def asset_id(key: str) -> str:
    """A stable UUID for the asset of a security (or plain ticker) ``key``."""
    digest = hashlib.sha256(f"asset|{key}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def assets_answer(
    parts: list[str],
    query: list[tuple[str, str]],
    book: SecurityBook,
    unknown: frozenset[str],
    today: dt.date,
    listed: frozenset[str] = frozenset(),
) -> Any:
    """The body of an assets request, or a :class:`BadRequest`; ``listed``: the plain
    tickers the list names besides the book's securities."""
    params = dict(query)
    if len(parts) == 3:
        unexpected = sorted(set(params))
        if unexpected:
            raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
        return _one_asset(parts[2], book, unknown, today)
    unexpected = sorted(set(params) - {"status", "asset_class", "exchange", "attributes"})
    if unexpected:
        raise BadRequest(f"unexpected query parameter(s): {', '.join(unexpected)}")
    status = params.get("status")
    if status not in (None, "active", "inactive"):
        raise BadRequest(f"invalid status: {status}")
    assets = [
        _security_asset(security, today)
        for security in book.securities
        if security.listed <= today and security.ticker_on(today) is not None
    ]
    assets.extend(
        _asset(plain_asset_id(ticker), ticker, f"{ticker} Simulated Inc.", True)
        for ticker in sorted(listed)
        if not book.known(ticker) and plain_ticker_exists(ticker, unknown)
    )
    return [asset for asset in assets if status is None or asset["status"] == status]


_TICKER_CHARACTERS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789."


def plain_asset_id(ticker: str) -> str:
    """The id of a plain ticker's asset (one never renamed): a UUID that holds the ticker,
    so the asset is found by its id as by its symbol, as the live API's are."""
    packed = 0
    for character in reversed(ticker):
        packed = packed * len(_TICKER_CHARACTERS) + _TICKER_CHARACTERS.index(character)
    check = hashlib.sha256(f"asset|{ticker}".encode()).digest()[:6]
    return str(uuid.UUID(bytes=check + packed.to_bytes(10, "big")))


def _plain_ticker_of(identifier: str) -> str | None:
    """The ticker a :func:`plain_asset_id` holds, if ``identifier`` is one."""
    try:
        raw = uuid.UUID(identifier).bytes
    except ValueError:
        return None
    packed, characters = int.from_bytes(raw[6:], "big"), []
    while packed:
        packed, index = divmod(packed, len(_TICKER_CHARACTERS))
        characters.append(_TICKER_CHARACTERS[index])
    ticker = "".join(characters)
    return ticker if ticker and plain_asset_id(ticker) == identifier else None


def _one_asset(
    identifier: str, book: SecurityBook, unknown: frozenset[str], today: dt.date
) -> dict[str, Any]:
    for security in book.securities:
        if asset_id(security.key) == identifier:
            return _security_asset(security, today)
    plain = _plain_ticker_of(identifier)
    if plain is not None and not book.known(plain) and plain_ticker_exists(plain, unknown):
        return _asset(identifier, plain, f"{plain} Simulated Inc.", True)
    if book.known(identifier):
        security = book.holder(identifier, today) or book.last_holder(identifier, today)
        if security is not None and security.ticker_on(today) == identifier:
            return _security_asset(security, today)
    elif plain_ticker_exists(identifier, unknown):
        return _asset(plain_asset_id(identifier), identifier, f"{identifier} Simulated Inc.", True)
    raise BadRequest(f"asset not found for {identifier}", status=404, code=ASSET_NOT_FOUND_CODE)


def _security_asset(security: SimulatedSecurity, today: dt.date) -> dict[str, Any]:
    symbol = security.ticker_on(today) or security.spans[0].ticker
    return _asset(asset_id(security.key), symbol, security.name, security.trades_on(today))


def _asset(identifier: str, symbol: str, name: str, active: bool) -> dict[str, Any]:
    return {
        "id": identifier,
        "class": "us_equity",
        "exchange": "NASDAQ",
        "symbol": symbol,
        "name": name,
        "status": "active" if active else "inactive",
        "tradable": active,
        "marginable": active,
        "shortable": active,
        "easy_to_borrow": active,
        "fractionable": active,
        "attributes": [],
    }


def security_action_records(book: SecurityBook) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Every rename in the book as Alpaca's ``name_changes`` corporate action records, and
    every delisting as a ``cash_mergers`` record (with the security's ``cash_per_share``)
    or else a ``worthless_removals`` one, effective the day after its last session."""
    records = []
    for security in book.securities:
        if security.delisted is not None:
            effective = (security.delisted + dt.timedelta(days=1)).isoformat()
            last = security.spans[-1].ticker
            record_id = asset_id(f"{security.key}|delisted")
            if security.cash_per_share is not None:
                merger = {
                    "id": record_id,
                    "acquirer_symbol": None,
                    "acquirer_cusip": None,
                    "acquiree_symbol": last,
                    "acquiree_cusip": security.cusip,
                    "rate": security.cash_per_share,
                    "effective_date": effective,
                    "process_date": effective,
                }
                records.append(("cash_mergers", merger))
            else:
                removal = {
                    "id": record_id,
                    "symbol": last,
                    "cusip": security.cusip,
                    "process_date": effective,
                }
                records.append(("worthless_removals", removal))
        for old, new in security.renames():
            record_id = asset_id(f"{security.key}|{new.ticker}|{new.start}")
            record = {
                "id": record_id,
                "old_symbol": old.ticker,
                "old_cusip": security.cusip,
                "new_symbol": new.ticker,
                "new_cusip": security.cusip,
                "process_date": new.start.isoformat(),
            }
            records.append(("name_changes", record))
    return tuple(records)
