"""Trades and quotes behind the synthetic minute bars: each bar is exactly what its trades
aggregate to, and every quote brackets the trade it precedes.

A minute bar of ``n`` trades and ``v`` shares is printed as:

- its **open** first and its **close** last, one print at its **high** and one at its
  **low** in between (so ``n`` is at least 4 and ``v`` at least ``n``);
- the other ``n - 4`` prints in pairs zero or more cents either side of the mid-range price
  ``m`` (a pair's two sizes are equal, so each pair's notional is ``m`` times its shares),
  and one print at ``m`` when their number is odd: the bar's vwap is then exact, computed
  from the plan by :func:`bar_vwaps` before any trade is drawn;
- plus **odd lots** (condition ``I``, 1-99 shares), which real bars leave out: they count
  toward nothing.

The conditions of a print decide what it counts toward, as the vendor's table does:
``@`` (regular) counts toward everything; ``I`` toward nothing; the few bars whose open
or close lies outside [low, high] (as real SIP bars have) print that open or close with
``4`` (derivatively priced), which here counts toward open, close, volume, count and vwap
but not high and low. :func:`counts_toward_bars` and :func:`counts_toward_range` say so.

Every minute is drawn from its own seeded stream, so any page of a day's trades or quotes
is reproducible without the minutes before it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

ROLE_PRINTS = 4  # open, high, low, close
REGULAR, ODD_LOT, OUTSIDE_RANGE = "@", "I", "4"
EXCHANGES = ("V", "P", "K", "Q", "N", "Z", "D", "X")
ODD_LOT_SHARE = 0.1  # odd lots per counted print


def role_sizes(volume: np.ndarray, trades: np.ndarray) -> tuple[np.ndarray, ...]:
    """Shares of the open, high and low prints, of the close print, and of the middle
    prints in all (vectorised over bars; ``trades`` >= 4, ``volume`` >= ``trades``)."""
    middle_count = trades - ROLE_PRINTS
    role = np.maximum(1, np.minimum(volume // trades, volume // ROLE_PRINTS))
    rest = volume - ROLE_PRINTS * role
    # With no middle prints the close takes the rest; with an even number of them (pairs
    # only, each of two equal sizes) an odd remainder's unit goes to the close too.
    per_print = np.where(middle_count > 0, rest // np.maximum(middle_count, 1), 0)
    remainder = rest - per_print * middle_count
    odd_unit = (middle_count > 0) & (middle_count % 2 == 0) & (remainder % 2 == 1)
    close = role + np.where(middle_count == 0, rest, 0) + odd_unit
    middle = np.where(middle_count > 0, rest - odd_unit, 0)
    return role, close, middle


def middle_prices(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The price, on a cent, the middle prints centre on: mid-range."""
    return np.clip(np.round((low + high) / 2, 2), low, high)


def bar_vwaps(
    opens: np.ndarray,
    highs: np.ndarray,
    lows: np.ndarray,
    closes: np.ndarray,
    volume: np.ndarray,
    trades: np.ndarray,
) -> np.ndarray:
    """Each bar's vwap as its prints make it (see the module's text), to 4 decimals."""
    role, close, middle = role_sizes(volume, trades)
    centre = middle_prices(lows, highs)
    notional = role * (opens + highs + lows) + close * closes + centre * middle
    return np.round(notional / volume, 4)


@dataclass(frozen=True)
class MinuteTrades:
    """One minute's prints, in time order."""

    times: np.ndarray  # epoch ns
    prices: np.ndarray
    sizes: np.ndarray
    conditions: list[tuple[str, ...]]
    exchanges: list[str]
    ids: np.ndarray


def minute_trades(
    key: str, start_s: int, bar: tuple[float, float, float, float, int, int, float]
) -> MinuteTrades:
    """The prints of the bar ``(o, h, l, c, v, n, vw)`` starting at ``start_s``; ``key``
    names its seeded stream (seed, symbol, feed)."""
    o, h, low, c, v, n, _ = bar
    rng = _stream(key, start_s)
    role, close_size, middle_total = (int(x[0]) for x in role_sizes(np.array([v]), np.array([n])))
    centre = float(middle_prices(np.array([low]), np.array([h]))[0])
    middle_count = n - ROLE_PRINTS
    # Middle prints: pairs at centre -/+ j cents with equal sizes, one at the centre if odd.
    pairs, single = divmod(middle_count, 2)
    reach = round(min(centre - low, h - centre) * 100)
    offsets = rng.integers(0, reach + 1, pairs) / 100 if pairs else np.zeros(0)
    base = middle_total // middle_count if middle_count else 0
    pair_sizes = np.full(pairs, base, dtype=np.int64)
    extra = middle_total - 2 * base * pairs - base * single
    centre_size = base + extra if single else 0
    if not single and extra:  # only an even extra is left: it goes to one pair, half each
        pair_sizes[0] += extra // 2
    middle_prices_ = np.concatenate([centre - offsets, centre + offsets, [centre] * single])
    middle_sizes = np.concatenate([pair_sizes, pair_sizes, [centre_size] * single])
    inside = [(h, role, REGULAR), (low, role, REGULAR)] + [
        (float(p), int(s), REGULAR) for p, s in zip(middle_prices_, middle_sizes, strict=True)
    ]
    order = rng.permutation(len(inside))
    sequence = [_role_print(o, role, low, h), *(inside[i] for i in order)]
    sequence.append(_role_print(c, close_size, low, h))
    sequence = _with_odd_lots(sequence, rng, low, h)
    times = start_s * 10**9 + np.sort(rng.integers(0, 60 * 10**9, len(sequence)))
    exchanges = [EXCHANGES[i] for i in rng.integers(0, len(EXCHANGES), len(sequence))]
    ids = (int.from_bytes(_digest(key, start_s)[:4], "big") << 20) + np.arange(len(sequence))
    return MinuteTrades(
        times=times,
        prices=np.round(np.array([p for p, _, _ in sequence]), 2),
        sizes=np.array([s for _, s, _ in sequence], dtype=np.int64),
        conditions=[_conditions(code) for _, _, code in sequence],
        exchanges=exchanges,
        ids=ids,
    )


def _role_print(price: float, size: int, low: float, high: float) -> tuple[float, int, str]:
    """The open or close print: outside [low, high] only as a derivatively priced one."""
    return price, size, REGULAR if low <= price <= high else OUTSIDE_RANGE


def _with_odd_lots(
    sequence: list[tuple[float, int, str]], rng: np.random.Generator, low: float, high: float
) -> list[tuple[float, int, str]]:
    """Odd lots at random places (first or last too): they count toward nothing."""
    count = int(rng.poisson(ODD_LOT_SHARE * len(sequence)))
    result = list(sequence)
    for _ in range(count):
        price = round(float(rng.uniform(low, high)), 2)
        result.insert(
            int(rng.integers(0, len(result) + 1)), (price, int(rng.integers(1, 100)), ODD_LOT)
        )
    return result


def _conditions(code: str) -> tuple[str, ...]:
    """A print's condition codes: a derivatively priced print is a regular sale too."""
    return (REGULAR, OUTSIDE_RANGE) if code == OUTSIDE_RANGE else (code,)


def counts_toward_bars(conditions: tuple[str, ...]) -> bool:
    """Whether a print counts toward a bar's open, close, volume, count and vwap."""
    return ODD_LOT not in conditions


def counts_toward_range(conditions: tuple[str, ...]) -> bool:
    """Whether a print counts toward a bar's high and low."""
    return counts_toward_bars(conditions) and OUTSIDE_RANGE not in conditions


@dataclass(frozen=True)
class MinuteQuotes:
    """One minute's quotes, in time order."""

    times: np.ndarray
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    bid_exchanges: list[str]
    ask_exchanges: list[str]


def minute_quotes(key: str, start_s: int, trades: MinuteTrades, per_trade: int) -> MinuteQuotes:
    """Quotes of the minute starting at ``start_s`` around its ``trades``: one just before
    each print that counts toward high and low, with its price inside [bid, ask], and
    ``per_trade - 1`` more of the same market between prints."""
    rng = _stream(f"{key}|quotes", start_s)
    counted = np.array([counts_toward_range(c) for c in trades.conditions])
    anchors = trades.prices[counted]
    anchor_times = trades.times[counted]
    repeats = max(1, per_trade)
    count = len(anchors) * repeats
    prices = np.repeat(anchors, repeats)
    below = rng.integers(0, 4, count) / 100
    above = rng.integers(0, 4, count) / 100
    above = np.where(below + above == 0, 0.01, above)  # at least a cent wide
    # Each counted print's quote comes last of its group, just before the print.
    previous = np.concatenate([[start_s * 10**9], anchor_times[:-1]])
    gaps = np.maximum(anchor_times - previous, repeats + 1)
    steps = np.sort(rng.random((len(anchors), repeats)), axis=1)
    times = (previous[:, None] + (steps * (gaps[:, None] - 1)).astype(np.int64) + 1).ravel()
    times = np.minimum(times, np.repeat(anchor_times, repeats) - 1)
    times = np.maximum.accumulate(np.maximum(times, start_s * 10**9))
    return MinuteQuotes(
        times=times,
        bid_prices=np.round(prices - below, 2),
        bid_sizes=rng.integers(1, 30, count),
        ask_prices=np.round(prices + above, 2),
        ask_sizes=rng.integers(1, 30, count),
        bid_exchanges=[EXCHANGES[i] for i in rng.integers(0, len(EXCHANGES), count)],
        ask_exchanges=[EXCHANGES[i] for i in rng.integers(0, len(EXCHANGES), count)],
    )


def _digest(key: str, start_s: int) -> bytes:
    return hashlib.sha256(f"{key}|{start_s}".encode()).digest()


def _stream(key: str, start_s: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(int.from_bytes(_digest(key, start_s)[:16], "big")))
