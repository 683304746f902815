"""Deterministic synthetic one-minute bars: same seed, same bars, on every machine."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import random
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from marketpipe.markettime.calendar import NEW_YORK, Session, new_york_midnight
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.simulator.actions import ActionBook
from marketpipe.simulator.ticks import ROLE_PRINTS, bar_vwaps

BAD_BAR_KINDS = ("high_below_low", "negative_volume", "nan", "duplicate", "out_of_order")
FEEDS_WITH_DATA = ("sip", "iex")
# The largest hour bucket that can never span two sessions (the overnight gap is 8 hours).
MAX_SIMULATED_HOURS = 8
# Share of minute bars whose open or close lies outside [low, high], as in real SIP data
# (open and close use stricter trade filters than high and low; Alpaca FAQ, forum t/7054).
DEFAULT_OUTSIDE_RANGE_RATE = 0.003
# Alpaca recalculates daily bars the next morning (forum t/16170); before that a session's
# daily bar is the plain roll-up of its minute bars.
DAILY_RECALCULATED_AT = dt.time(6, 0)


class Bar(NamedTuple):
    """One synthetic bar; ``t`` is the bar start in epoch seconds (UTC)."""

    t: int
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: int
    n: int
    vw: float


class SymbolTraits(NamedTuple):
    """Per-symbol character of the synthetic market, derived from the seed."""

    base_price: float
    volatility: float
    regular_fill: float
    extended_fill: float
    mean_volume: float
    trade_size: int


class SyntheticMarket:
    """Generates bars only for minutes with trades, inside each feed's session window.

    Every (symbol, day) is generated from its own seeded stream, so any page of any query
    is reproducible without generating the days before it. ``bad_bars`` injects malformed
    rows (rates per bar) deterministically, for testing quarantine; ``listings`` gives
    symbols a first trading day, before which they have no bars; ``unknown_symbols`` never
    trade (the vendor does not know them). ``outside_range_rate`` of the bars have an open
    or close outside [low, high], as real bars can. ``corrections`` are (symbol, day) pairs
    the vendor corrected after the fact (a print cancelled late), served corrected.
    ``actions`` are the corporate actions: from a split's ex-date on, raw prices are divided
    and volumes multiplied by its ratio, as a real split does to the tape.
    """

    def __init__(
        self,
        seed: int = 0,
        bad_bars: Mapping[str, float] | None = None,
        listings: Mapping[str, dt.date] | None = None,
        unknown_symbols: frozenset[str] = frozenset(),
        outside_range_rate: float = DEFAULT_OUTSIDE_RANGE_RATE,
        corrections: frozenset[tuple[str, dt.date]] = frozenset(),
        actions: ActionBook | None = None,
    ) -> None:
        unknown = set(bad_bars or {}) - set(BAD_BAR_KINDS)
        if unknown:
            raise ValueError(
                f"unknown bad-bar kind(s) {sorted(unknown)}; choose from {BAD_BAR_KINDS}"
            )
        self.seed = seed
        self.bad_bars = {kind: rate for kind, rate in (bad_bars or {}).items() if rate > 0}
        self.listings = dict(listings or {})
        self.unknown_symbols = frozenset(unknown_symbols)
        if not 0 <= outside_range_rate <= 1:
            raise ValueError(f"outside_range_rate must be in [0, 1], got {outside_range_rate}")
        self.outside_range_rate = outside_range_rate
        self.corrections = frozenset(corrections)
        self.actions = actions or ActionBook(())
        self._minute_bars = functools.lru_cache(maxsize=256)(self._generate_minute_bars)

    def traits(self, symbol: str) -> SymbolTraits:
        """The symbol's price level, volatility and liquidity."""
        rng = random.Random(f"{self.seed}|traits|{symbol}")
        liquidity = rng.uniform(0.55, 1.0)
        return SymbolTraits(
            base_price=round(rng.uniform(5.0, 600.0), 2),
            volatility=rng.uniform(0.0003, 0.0012),
            regular_fill=min(1.0, 0.92 + 0.1 * liquidity),
            extended_fill=0.15 + 0.8 * liquidity,
            mean_volume=rng.uniform(2_000, 60_000) * liquidity,
            trade_size=rng.randint(40, 160),
        )

    def bars(
        self,
        symbol: str,
        session: Session,
        feed: str,
        timeframe: Timeframe,
        as_of: float | None = None,
    ) -> list[Bar]:
        """The session's bars for a feed at a timeframe, in the order the vendor sends them.

        ``as_of`` (epoch seconds) is when they are asked for: only minute bars whose minute
        is over exist yet, wider bars are rolled up from those (so the current one is
        partial), and a daily bar is provisional until it is recalculated the next morning.
        ``None`` means long after the session: every bar in its final form.
        """
        minute_bars = self._minute_bars(symbol, session, feed)
        if as_of is not None:
            minute_bars = tuple(bar for bar in minute_bars if bar.t + 60 <= as_of)
        if timeframe.unit is TimeframeUnit.MINUTE and timeframe.amount == 1:
            return list(minute_bars)
        bars = _aggregate(minute_bars, session, timeframe)
        recalculated = as_of is None or as_of >= daily_recalculation(session).timestamp()
        if timeframe.unit is TimeframeUnit.DAY and bars and recalculated:
            bars = [self._recalculated_daily(bars[0], symbol, session)]
        return bars

    def _recalculated_daily(self, bar: Bar, symbol: str, session: Session) -> Bar:
        """The daily bar after the vendor's overnight recalculation.

        Trades that count only towards daily volume (extended-hours form-T prints and the
        like) make the final daily volume exceed the sum of the minute bars.
        """
        rng = random.Random(f"{self.seed}|daily|{symbol}|{session.date.isoformat()}")
        extra = int(bar.v * rng.uniform(0.002, 0.02))
        return bar._replace(v=bar.v + extra, n=bar.n + max(1, extra // 100))

    def _generate_minute_bars(self, symbol: str, session: Session, feed: str) -> tuple[Bar, ...]:
        listed = self.listings.get(symbol)
        unlisted = listed is not None and session.date < listed
        if feed not in FEEDS_WITH_DATA or unlisted or symbol in self.unknown_symbols:
            return ()
        traits = self.traits(symbol)
        stream = hashlib.sha256(f"{self.seed}|bars|{symbol}|{session.date}".encode()).digest()
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(stream[:16], "big")))
        sip_start, sip_end = (int(x.timestamp()) for x in session.extended_window("sip"))
        feed_start, feed_end = (int(x.timestamp()) for x in session.extended_window(feed))
        # The price walk spans the whole sip window with the same draws for every feed, so
        # all feeds see the same prices and iex minutes are a subset of sip's.
        times = np.arange(sip_start, sip_end, 60, dtype=np.int64)
        count, sigma = len(times), traits.volatility
        start_price = traits.base_price * math.exp(rng.normal(0.0, 0.03))
        moves = rng.normal(0.0, sigma, count)
        wick_up = np.abs(rng.normal(0.0, sigma / 2, count))
        wick_down = np.abs(rng.normal(0.0, sigma / 2, count))
        trade_roll = rng.random(count)
        volume_draw = rng.lognormal(0.0, 0.8, count)
        # Shares per share of before every split: the same walk, on the tape's scale.
        shares = self.actions.shares_per_original(symbol, session.date)
        close = np.maximum(0.5, start_price * np.exp(np.cumsum(moves))) / shares
        opened = np.concatenate(([start_price / shares], close[:-1]))
        regular = (times >= session.open.timestamp()) & (times < session.close.timestamp())
        fill = np.where(regular, traits.regular_fill, traits.extended_fill)
        if feed == "iex":
            fill = fill * np.where(regular, 0.85, 0.35)
        keep = (times >= feed_start) & (times < feed_end) & (trade_roll < fill)
        o, c = np.round(opened, 2), np.round(close, 2)
        h = np.maximum(
            np.ceil(np.maximum(opened, close) * (1 + wick_up) * 100) / 100, np.maximum(o, c)
        )
        low = np.minimum(
            np.floor(np.minimum(opened, close) * (1 - wick_down) * 100) / 100, np.minimum(o, c)
        )
        low = np.maximum(low, 0.01)
        o, c = self._outside_range(o, c, h, low, symbol, session)
        scale = np.where(regular, 1.0, 0.15) * (0.025 if feed == "iex" else 1.0)
        volume = np.maximum(1, (traits.mean_volume * scale * volume_draw).astype(np.int64))
        # At least the open, high, low and close prints (see simulator.ticks).
        trades = np.maximum(ROLE_PRINTS, volume // traits.trade_size)
        if shares != 1.0:
            volume = np.round(volume * shares).astype(np.int64)
        volume = np.maximum(volume, trades)
        vwap = bar_vwaps(o, h, low, c, volume, trades)
        columns = (times, o, h, low, c, volume, trades, vwap)
        bars = [
            Bar(*row) for row in zip(*(column[keep].tolist() for column in columns), strict=True)
        ]
        if (symbol, session.date) in self.corrections and bars:
            bars = _corrected(bars)
        if self.bad_bars:
            bars = self._corrupt(bars, symbol, session, feed)
        return tuple(bars)

    def _outside_range(
        self,
        opens: np.ndarray,
        closes: np.ndarray,
        highs: np.ndarray,
        lows: np.ndarray,
        symbol: str,
        session: Session,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Move the open or close of a few bars just outside [low, high], as real data has.

        Drawn from a stream of its own, so every other value stays what the seed gives.
        """
        if self.outside_range_rate <= 0:
            return opens, closes
        stream = hashlib.sha256(f"{self.seed}|outside|{symbol}|{session.date}".encode()).digest()
        rng = np.random.Generator(np.random.PCG64(int.from_bytes(stream[:16], "big")))
        count = len(opens)
        hit = rng.random(count) < self.outside_range_rate
        which = rng.integers(0, 4, count)
        step = rng.integers(1, 6, count) / 100
        opens, closes = opens.copy(), closes.copy()
        moves = ((opens, highs, 1), (opens, lows, -1), (closes, highs, 1), (closes, lows, -1))
        for kind, (target, bound, sign) in enumerate(moves):
            chosen = hit & (which == kind)
            target[chosen] = np.round(bound[chosen] + sign * step[chosen], 2)
        return np.maximum(opens, 0.01), np.maximum(closes, 0.01)

    def _corrupt(self, bars: list[Bar], symbol: str, session: Session, feed: str) -> list[Bar]:
        rng = random.Random(f"{self.seed}|bad|{symbol}|{session.date.isoformat()}|{feed}")
        result: list[Bar] = []
        for bar in bars:
            rolls = {kind: rng.random() for kind in BAD_BAR_KINDS}
            hit = {kind for kind, rate in self.bad_bars.items() if rolls[kind] < rate}
            if "high_below_low" in hit:
                bar = bar._replace(h=bar.l - 0.01, l=bar.h)
            if "negative_volume" in hit:
                bar = bar._replace(v=-bar.v)
            if "nan" in hit:
                bar = bar._replace(c=math.nan)
            result.append(bar)
            if "duplicate" in hit:
                result.append(bar)
            if "out_of_order" in hit and len(result) >= 2:
                result[-1], result[-2] = result[-2], result[-1]
        return result


def scaled(bars: list[Bar], price: float, volume: float) -> list[Bar]:
    """``bars`` with prices (vwap included) times ``price`` and volumes times ``volume``, as an
    adjustment for splits and dividends makes them (the bars themselves when both are 1)."""
    if price == 1.0 and volume == 1.0:
        return bars
    return [
        bar._replace(
            o=bar.o * price,
            h=bar.h * price,
            l=bar.l * price,
            c=bar.c * price,
            vw=bar.vw * price,
            v=bar.v * volume,
        )
        for bar in bars
    ]


def _corrected(bars: list[Bar]) -> list[Bar]:
    """The session after a late cancel: one print leaves the middle bar's volume and count."""
    middle = len(bars) // 2
    bar = bars[middle]
    cancelled = max(1, bar.v // 3)
    trades = max(ROLE_PRINTS, bar.n - 1)
    volume = max(trades, bar.v - cancelled)
    prices = [np.array([price]) for price in (bar.o, bar.h, bar.l, bar.c)]
    vwap = float(bar_vwaps(*prices, np.array([volume]), np.array([trades]))[0])
    fixed = bar._replace(v=volume, n=trades, vw=vwap)
    return [*bars[:middle], fixed, *bars[middle + 1 :]]


def daily_recalculation(session: Session) -> dt.datetime:
    """When the vendor recalculates ``session``'s daily bar: the next calendar morning."""
    morning = session.date + dt.timedelta(days=1)
    return dt.datetime.combine(morning, DAILY_RECALCULATED_AT, NEW_YORK).astimezone(dt.UTC)


def _bucket_start(t: int, session: Session, timeframe: Timeframe) -> int:
    width = timeframe.seconds
    if width is not None:
        return t - t % width
    return int(new_york_midnight(session.date).timestamp())


def _aggregate(minute_bars: tuple[Bar, ...], session: Session, timeframe: Timeframe) -> list[Bar]:
    """Roll minute bars up into wider bars (N-minute, N-hour or daily)."""
    if timeframe.unit in (TimeframeUnit.WEEK, TimeframeUnit.MONTH) or (
        timeframe.unit is TimeframeUnit.HOUR and timeframe.amount > MAX_SIMULATED_HOURS
    ):
        raise ValueError(f"timeframe {timeframe} is not supported by the simulator")
    groups: dict[int, list[Bar]] = {}
    for bar in minute_bars:
        groups.setdefault(_bucket_start(bar.t, session, timeframe), []).append(bar)
    result = []
    for start, members in groups.items():
        volume = sum(bar.v for bar in members)
        vwap = sum(bar.vw * bar.v for bar in members) / volume if volume > 0 else members[-1].vw
        result.append(
            Bar(
                t=start,
                o=members[0].o,
                h=max(bar.h for bar in members),
                l=min(bar.l for bar in members),
                c=members[-1].c,
                v=volume,
                n=sum(bar.n for bar in members),
                vw=round(vwap, 4),
            )
        )
    return result
