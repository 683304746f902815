"""The simulated vendor's corporate actions: what it serves, and what they do to its bars.

Records are kept as Alpaca sends them, ``(group, record)`` pairs such as
``("forward_splits", {...})``. Two things follow from them:

- **Raw bars** move with the market: from a split's ex-date on, prices are divided by the
  ratio (new/old shares) and volumes multiplied by it, whether or not the vendor has
  processed the record yet.
- **Adjusted bars** (``adjustment=split|dividend|all``) follow Alpaca's method, with what
  the vendor knows at the moment of the request (records whose ``process_date`` has come):
  a split scales the prices of every earlier session by old/new and the volume by new/old;
  a cash dividend scales the prices of every earlier session by ``1 - rate / close``, where
  ``close`` is the raw SIP close of the last regular-hours minute of the session before the
  ex-date. A stock dividend of ``rate`` counts as a ``1 + rate`` split.

This module is deliberately written apart from MarketPipe's own read-time adjustment (a
loop over bars here, columns there), so tests comparing the two compare two derivations.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketpipe.markettime.calendar import Session, previous_session

# Splits: group -> how the ratio (new shares per old share) is read from a record.
_SPLIT_GROUPS = ("forward_splits", "reverse_splits")
_STOCK_DIVIDENDS = "stock_dividends"
_CASH_DIVIDENDS = "cash_dividends"

# The demo market's actions, in Alpaca's wire shape. The synthetic market's prices are not
# the real companies'; the AAPL split is invented so the default range (2024-01-02 ..
# 2024-02-29) holds a split and a cash dividend of one symbol; the dividends use the real
# 2024 amounts and dates.
DEMO_CORPORATE_ACTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "cash_dividends",
        {
            "id": "5d2c8c52-6f0e-4c3a-9d6b-1a1d2e3f4a01",
            "symbol": "AAPL",
            "cusip": "037833100",
            "rate": 0.24,
            "special": False,
            "foreign": False,
            "process_date": "2024-02-15",
            "ex_date": "2024-02-09",
            "record_date": "2024-02-12",
            "payable_date": "2024-02-15",
        },
    ),
    (
        "forward_splits",
        {
            "id": "5d2c8c52-6f0e-4c3a-9d6b-1a1d2e3f4a02",
            "symbol": "AAPL",
            "cusip": "037833100",
            "old_rate": 1,
            "new_rate": 4,
            "process_date": "2024-02-12",
            "ex_date": "2024-02-12",
            "record_date": "2024-02-05",
            "payable_date": "2024-02-09",
        },
    ),
    (
        "cash_dividends",
        {
            "id": "5d2c8c52-6f0e-4c3a-9d6b-1a1d2e3f4a03",
            "symbol": "MSFT",
            "cusip": "594918104",
            "rate": 0.75,
            "special": False,
            "foreign": False,
            "process_date": "2024-03-14",
            "ex_date": "2024-02-14",
            "record_date": "2024-02-15",
            "payable_date": "2024-03-14",
        },
    ),
    (
        "cash_dividends",
        {
            "id": "5d2c8c52-6f0e-4c3a-9d6b-1a1d2e3f4a04",
            "symbol": "SPY",
            "cusip": "78462F103",
            "rate": 1.5949,
            "special": False,
            "foreign": False,
            "process_date": "2024-04-30",
            "ex_date": "2024-03-15",
            "record_date": "2024-03-18",
            "payable_date": "2024-04-30",
        },
    ),
)


@dataclass(frozen=True)
class PriceEvent:
    """A split (``ratio`` new shares per old) or a cash dividend (``cash`` per share)."""

    action_id: str
    ex_date: dt.date
    process_date: dt.date
    ratio: float | None = None
    cash: float | None = None


def _day(record: Mapping[str, Any], key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(record[key]))
    except (KeyError, ValueError):
        raise ValueError(
            f"corporate action {record.get('id')!r}: {key} must be a YYYY-MM-DD date"
        ) from None


def _positive(record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"corporate action {record.get('id')!r}: {key} must be a number > 0")
    return float(value)


def _event(group: str, record: Mapping[str, Any]) -> PriceEvent | None:
    if group in _SPLIT_GROUPS:
        ratio = _positive(record, "new_rate") / _positive(record, "old_rate")
    elif group == _STOCK_DIVIDENDS:
        ratio = 1.0 + _positive(record, "rate")
    elif group == _CASH_DIVIDENDS:
        return PriceEvent(
            str(record.get("id")),
            _day(record, "ex_date"),
            _day(record, "process_date"),
            cash=_positive(record, "rate"),
        )
    else:
        return None  # name changes, mergers, spin-offs ...: no price effect simulated
    return PriceEvent(
        str(record.get("id")), _day(record, "ex_date"), _day(record, "process_date"), ratio=ratio
    )


class ActionBook:
    """The price effects of the configured corporate actions, by symbol, oldest first.

    A malformed record raises ``ValueError`` naming it; with ``strict=False`` it is skipped
    instead (the simulator still serves it as it is, to test clients' rejection of it).
    """

    def __init__(
        self, records: Iterable[tuple[str, Mapping[str, Any]]], *, strict: bool = True
    ) -> None:
        self.splits: dict[str, list[PriceEvent]] = {}
        self.dividends: dict[str, list[PriceEvent]] = {}
        for group, record in records:
            try:
                event = _event(group, record)
                symbol = str(record.get("symbol") or "")
                if event is not None and not symbol:
                    raise ValueError(f"corporate action {record.get('id')!r} has no symbol")
            except ValueError:
                if strict:
                    raise
                continue
            if event is None:
                continue
            book = self.splits if event.ratio is not None else self.dividends
            book.setdefault(symbol, []).append(event)
        for events in (*self.splits.values(), *self.dividends.values()):
            events.sort(key=lambda event: (event.ex_date, event.action_id))

    def shares_per_original(self, symbol: str, day: dt.date) -> float:
        """How many shares one share of before every split has become by ``day`` (raw)."""
        factor = 1.0
        for split in self.splits.get(symbol, ()):
            if split.ex_date <= day:
                factor *= split.ratio or 1.0
        return factor

    def adjustment_factors(
        self,
        symbol: str,
        day: dt.date,
        kinds: frozenset[str],
        known_on: dt.date,
        reference_close: Callable[[str, Session], float | None],
    ) -> tuple[float, float]:
        """(price factor, volume factor) for ``symbol``'s bars of ``day``.

        Only actions processed by ``known_on`` count, applied oldest ex-date first.
        ``reference_close(symbol, session)`` gives the close a dividend's factor uses, or
        ``None`` while that session is not over (the dividend is then not applied yet).
        """
        price, volume = 1.0, 1.0
        events: list[PriceEvent] = []
        if "split" in kinds:
            events += self.splits.get(symbol, [])
        if "dividend" in kinds:
            events += self.dividends.get(symbol, [])
        for event in sorted(events, key=lambda event: (event.ex_date, event.action_id)):
            if event.ex_date <= day or event.process_date > known_on:
                continue
            if event.ratio is not None:
                price *= 1.0 / event.ratio
                volume *= event.ratio
                continue
            close = reference_close(symbol, previous_session(event.ex_date))
            if close is not None:
                price *= 1.0 - (event.cash or 0.0) / close
        return price, volume


def adjustment_kinds(adjustment: str) -> frozenset[str]:
    """Which price effects an ``adjustment`` value asks for (``all`` = split and dividend)."""
    parts = set(adjustment.split(","))
    if "all" in parts:
        parts |= {"split", "dividend"}
    return frozenset(parts & {"split", "dividend"})


def grouped_records(
    records: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[str, list[dict[str, Any]]]:
    """``(group, record)`` pairs in Alpaca's response shape, ``{group: [record, ...]}``."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for group, record in records:
        grouped.setdefault(group, []).append(dict(record))
    return grouped


def ungrouped_records(
    grouped: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The inverse of :func:`grouped_records`."""
    return tuple((group, dict(record)) for group, records in grouped.items() for record in records)


def load_corporate_actions(path: Path) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Records from a JSON file in Alpaca's shape, ``{"forward_splits": [{...}], ...}``."""
    try:
        grouped = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(grouped, dict) or not all(
        isinstance(records, list) and all(isinstance(record, dict) for record in records)
        for records in grouped.values()
    ):
        raise ValueError(f'{path}: expected {{"group": [{{record}}, ...], ...}}')
    records = ungrouped_records(grouped)
    ActionBook(records)  # reject a malformed record now, naming it
    return records
