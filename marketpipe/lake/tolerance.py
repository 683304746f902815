"""How far two prices may differ and still agree: in ticks (the default), dollars or basis points.

A relative tolerance hides real differences on expensive stocks (1e-4 of $190 is 1.9 cents),
so reconciliation compares prices in ticks unless told otherwise: exact to the cent for prices
of $1 and more, to $0.0001 below (the US minimum price increments), with float noise under
half a tick ignored. ``0.01`` allows one cent either way; ``1bp`` one basis point of the
larger price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

TICK = 0.01  # the minimum price increment at $1 and above
SUB_DOLLAR_TICK = 0.0001  # below $1
_BASIS_POINTS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*bps?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class PriceTolerance:
    """A price tolerance: ``ticks`` (exact to the tick), ``absolute`` dollars or ``relative``."""

    kind: Literal["ticks", "absolute", "relative"]
    value: float = 0.0

    @classmethod
    def parse(cls, text: str | float | PriceTolerance) -> PriceTolerance:
        """``0`` (exact to the tick), ``0.01`` (dollars) or ``1bp`` (basis points)."""
        if isinstance(text, PriceTolerance):
            return text
        raw = str(text).strip()
        matched = _BASIS_POINTS.match(raw)
        if matched:
            return cls("relative", float(matched.group(1)) / 10_000)
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(
                f"price tolerance {raw!r} is not 0 (exact to the tick), an amount in dollars "
                "(0.01) or basis points (1bp)"
            ) from None
        if not 0 <= value < float("inf"):
            raise ValueError(f"price tolerance {raw!r} must be 0 or more dollars")
        return cls("ticks") if value == 0 else cls("absolute", value)

    def describe(self) -> str:
        """For people: ``exact to the tick``, ``$0.01``, ``1bp``."""
        if self.kind == "ticks":
            return "exact to the tick"
        if self.kind == "absolute":
            return f"${self.value:g}"
        return f"{self.value * 10_000:g}bp"

    def differs(self, a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
        """Per row: whether ``a`` and ``b`` differ beyond the tolerance (false where either
        side has no value)."""
        a, b = a.cast(pa.float64()), b.cast(pa.float64())
        gap = pc.abs(pc.subtract(a, b))
        larger = pc.max_element_wise(pc.abs(a), pc.abs(b))
        if self.kind == "ticks":
            tick = pc.if_else(pc.greater_equal(larger, 1.0), TICK, SUB_DOLLAR_TICK)
            allowed = pc.multiply(tick, 0.5)
        elif self.kind == "absolute":
            allowed = pa.scalar(self.value + 1e-9)  # a cent allowed is a cent, float noise aside
        else:
            allowed = pc.multiply(larger, self.value)
        return pc.fill_null(pc.greater(gap, allowed), False)


def relative_differs(a: pa.ChunkedArray, b: pa.ChunkedArray, tolerance: float) -> pa.ChunkedArray:
    """Per row: ``|a - b| / max(|a|, |b|) > tolerance`` (false where either side is null)."""
    return PriceTolerance("relative", tolerance).differs(a, b)
