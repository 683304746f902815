"""The simulated market's securities: which company traded under which ticker on which day.

A ticker is not a security. A :class:`SimulatedSecurity` keeps one price series for its whole
life, whatever it was called: it lists on its first ticker's date, may change ticker
(FB became META on 2022-06-09) and may be delisted after a last session. Another security may
later take up a ticker that an earlier one gave up. The :class:`SecurityBook` answers the two
questions the vendors answer differently:

- **as traded** (Polygon's aggregates, Alpaca with ``asof=-``): whose bars a ticker carried
  on a day;
- **mapped** (Alpaca's default): the security a ticker names on an ``asof`` date, whose whole
  history is served under the ticker asked for.

Tickers no security in the book ever used are securities of their own (the synthetic market's
plain symbols), listed long before any range and never renamed, so a book leaves every other
ticker's bars exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_FIGI_ALPHABET = "BCDFGHJKLMNPQRSTVWXYZ0123456789"
# Alpaca's symbol map learns of a rename overnight: asking with ``asof`` on the rename day
# itself does not map yet (reference alpaca-live-data.md, "Renames").
MAPPING_LAG = dt.timedelta(days=1)


def figi_like(text: str, kind: str = "composite") -> str:
    """A stable, FIGI-shaped id (``BBG`` and nine characters) made from ``text``."""
    digest = hashlib.sha256(f"{kind}|{text}".encode()).digest()
    return "BBG" + "".join(_FIGI_ALPHABET[byte % len(_FIGI_ALPHABET)] for byte in digest[:9])


def plain_ticker_exists(ticker: str, unknown: frozenset[str]) -> bool:
    """Whether the synthetic market knows a ticker outside the book: every well-formed
    upper-case one except the configured unknown symbols."""
    return ticker not in unknown and ticker.replace(".", "").isalnum() and ticker == ticker.upper()


@dataclass(frozen=True)
class TickerSpan:
    """One ticker a security traded under, from ``start`` until the next span's start."""

    ticker: str
    start: dt.date


@dataclass(frozen=True)
class SimulatedSecurity:
    """One company's share class: its tickers over time, its listing and its delisting."""

    name: str
    spans: tuple[TickerSpan, ...]
    delisted: dt.date | None = None  # the last session it traded
    figi: str | None = None
    cash_per_share: float | None = None  # what a cash takeover paid when it was delisted

    @property
    def key(self) -> str:
        """The name its price series is generated under: first ticker @ listing date."""
        return f"{self.spans[0].ticker}@{self.listed.isoformat()}"

    @property
    def listed(self) -> dt.date:
        """Its first session."""
        return self.spans[0].start

    @property
    def composite_figi(self) -> str:
        """Its FIGI: the configured one, else one made from its key."""
        return self.figi or figi_like(self.key)

    @property
    def cusip(self) -> str:
        """A CUSIP-shaped id (nine characters) made from its key."""
        return hashlib.sha256(f"cusip|{self.key}".encode()).hexdigest()[:9].upper()

    def trades_on(self, day: dt.date) -> bool:
        """Whether it is listed on ``day``."""
        return self.listed <= day and (self.delisted is None or day <= self.delisted)

    def ticker_on(self, day: dt.date) -> str | None:
        """The ticker it used on ``day`` (also after a delisting: the last one), or ``None``
        before its listing."""
        used = None
        for span in self.spans:
            if span.start <= day:
                used = span.ticker
        return used

    def holds(self, ticker: str, day: dt.date) -> bool:
        """Whether ``ticker`` named this security on ``day`` (listed, not yet delisted)."""
        return self.trades_on(day) and self.ticker_on(day) == ticker

    def renames(self) -> list[tuple[TickerSpan, TickerSpan]]:
        """Each (old, new) ticker pair, in date order."""
        return list(itertools.pairwise(self.spans))


def security_from_record(record: Mapping[str, Any]) -> SimulatedSecurity:
    """A security from its config shape: ``{name, tickers: {FB: 2012-05-18, META: ...},
    delisted, figi, cash_per_share}``; a clear ``ValueError`` naming what is wrong."""
    name = str(record.get("name") or "")
    tickers = record.get("tickers")
    if not name or not isinstance(tickers, Mapping) or not tickers:
        raise ValueError(
            "a simulated security needs a name and tickers: {TICKER: first date, ...}, "
            f"got {dict(record)!r}"
        )
    spans = []
    for ticker, start in tickers.items():
        try:
            day = start if isinstance(start, dt.date) else dt.date.fromisoformat(str(start))
        except ValueError:
            raise ValueError(f"security {name!r}: {ticker}: {start!r} is not a date") from None
        spans.append(TickerSpan(str(ticker), day))
    delisted = record.get("delisted")
    if delisted is not None and not isinstance(delisted, dt.date):
        try:
            delisted = dt.date.fromisoformat(str(delisted))
        except ValueError:
            raise ValueError(f"security {name!r}: delisted {delisted!r} is not a date") from None
    cash = record.get("cash_per_share")
    if cash is not None and (isinstance(cash, bool) or not isinstance(cash, int | float)):
        raise ValueError(f"security {name!r}: cash_per_share {cash!r} is not a number")
    return SimulatedSecurity(
        name, tuple(spans), delisted, record.get("figi"), None if cash is None else float(cash)
    )


class SecurityBook:
    """Every simulated security, checked for what no real market allows."""

    def __init__(self, securities: Iterable[SimulatedSecurity] = ()) -> None:
        self.securities = tuple(securities)
        self._by_ticker: dict[str, list[SimulatedSecurity]] = {}
        for security in self.securities:
            _check(security)
            for span in security.spans:
                users = self._by_ticker.setdefault(span.ticker, [])
                if security not in users:
                    users.append(security)
        for ticker, users in self._by_ticker.items():
            _check_single_owner(ticker, users)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> SecurityBook:
        """A book from config records (see :func:`security_from_record`)."""
        return cls(security_from_record(record) for record in records)

    def known(self, ticker: str) -> bool:
        """Whether some security in the book used ``ticker`` at some time."""
        return ticker in self._by_ticker

    def tickers_on(self, day: dt.date) -> list[str]:
        """The tickers some security in the book traded under on ``day``."""
        return sorted(ticker for ticker in self._by_ticker if self.holder(ticker, day))

    def holder(self, ticker: str, day: dt.date) -> SimulatedSecurity | None:
        """The security ``ticker`` named on ``day``, if one traded under it then."""
        for security in self._by_ticker.get(ticker, ()):
            if security.holds(ticker, day):
                return security
        return None

    def last_holder(self, ticker: str, day: dt.date) -> SimulatedSecurity | None:
        """The security that last used ``ticker`` on or before ``day`` (also a delisted one)."""
        users = [
            (span.start, security)
            for security in self._by_ticker.get(ticker, ())
            for span in security.spans
            if span.ticker == ticker and span.start <= day
        ]
        return max(users, key=lambda pair: pair[0])[1] if users else None

    def as_traded(self, ticker: str, day: dt.date) -> str | None:
        """The series ``ticker`` carried on ``day``: a book security's, the ticker's own
        when the book never heard of it, or ``None`` when nothing traded under it."""
        if not self.known(ticker):
            return ticker
        security = self.holder(ticker, day)
        return security.key if security is not None else None

    def mapped_entity(self, ticker: str, asof: dt.date) -> SimulatedSecurity | None:
        """The security Alpaca maps ``ticker`` to when asked ``asof`` (``None``: not mapped,
        the ticker is served as traded)."""
        return self.holder(ticker, asof - MAPPING_LAG)

    def series(self, ticker: str, day: dt.date, asof: dt.date | None) -> str | None:
        """What Alpaca serves for ``ticker`` on ``day`` when asked with ``asof`` (``None``
        for ``asof=-``): the mapped security's series whatever it was called, else the
        as-traded one."""
        entity = self.mapped_entity(ticker, asof) if asof is not None else None
        if entity is None:
            return self.as_traded(ticker, day)
        return entity.key if entity.trades_on(day) else None

    def resolve(self, identifier: str, day: dt.date) -> SimulatedSecurity | None:
        """The security a ticker (its holder on ``day``, else its last user) or a FIGI names."""
        for security in self.securities:
            if security.composite_figi == identifier:
                return security
        return self.holder(identifier, day) or self.last_holder(identifier, day)


def _check(security: SimulatedSecurity) -> None:
    starts = [span.start for span in security.spans]
    if starts != sorted(set(starts)):
        raise ValueError(
            f"security {security.name!r}: its tickers' first dates must increase: "
            f"{[(span.ticker, span.start.isoformat()) for span in security.spans]}"
        )
    if security.delisted is not None and security.delisted < starts[-1]:
        raise ValueError(
            f"security {security.name!r}: delisted {security.delisted} before its last ticker "
            f"{security.spans[-1].ticker} started ({starts[-1]})"
        )


def _check_single_owner(ticker: str, users: list[SimulatedSecurity]) -> None:
    """Two securities may use one ticker at different times, never on the same day."""
    intervals = []
    for security in users:
        for index, span in enumerate(security.spans):
            if span.ticker != ticker:
                continue
            following = security.spans[index + 1 :]
            until = following[0].start if following else None
            if security.delisted is not None:
                last = security.delisted + dt.timedelta(days=1)
                until = last if until is None else min(until, last)
            intervals.append((span.start, until, security.name))
    intervals.sort(key=lambda item: item[0])
    for (start, until, name), (next_start, _, next_name) in itertools.pairwise(intervals):
        if until is None or next_start < until:
            raise ValueError(
                f"ticker {ticker} is used by {name!r} (from {start}) and {next_name!r} (from "
                f"{next_start}) at once: ambiguous ownership"
            )
