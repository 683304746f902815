"""Which trades a vendor's minute bars count, by the trade's conditions.

A bar is built from the trades whose conditions let them count: open and close are the first
and last counted trade, volume and trade_count their sum and number, vwap their
size-weighted price; high and low leave out the trades whose conditions may not set them.
The table is the vendor's rule for the condition codes MarketPipe knows (the simulator's
bars follow it): odd lots count toward no bar, and a derivatively priced print (its price
may lie outside the minute's range) toward everything but high and low. Real vendors apply
fuller tables, so bars rolled up from real trades match theirs closely, not always exactly;
``marketpipe reconcile --from-trades`` reports how closely.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BarRules:
    """The condition codes that keep a trade out of a bar, or out of its high and low."""

    uncounted: frozenset[str]  # in no bar field
    not_in_range: frozenset[str]  # in every field but high and low


# Alpaca: the SIP's letter codes (I odd lot, 4 derivatively priced); Massive: its numeric
# condition IDs as text (37 odd lot, 10 derivatively priced).
BAR_RULES = {
    "alpaca": BarRules(frozenset({"I"}), frozenset({"4"})),
    "polygon": BarRules(frozenset({"37"}), frozenset({"10"})),
}
BAR_RULES["demo"] = BAR_RULES["alpaca"]  # the demo simulator speaks Alpaca's codes


def bar_rules(vendor: str) -> BarRules:
    """The rules of ``vendor`` (as a lake's footer names it)."""
    try:
        return BAR_RULES[vendor]
    except KeyError:
        raise ValueError(
            f"no trade-condition rules for vendor {vendor!r}; known: {', '.join(sorted(BAR_RULES))}"
        ) from None
