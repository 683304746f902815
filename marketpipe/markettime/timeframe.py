"""Bar timeframes in Alpaca's notation (``1Min``, ``15T``, ``1Hour``, ``1Day`` ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class TimeframeUnit(StrEnum):
    """The unit of a bar timeframe, spelled as Alpaca spells it."""

    MINUTE = "Min"
    HOUR = "Hour"
    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"


_ALIASES = {
    "min": TimeframeUnit.MINUTE,
    "t": TimeframeUnit.MINUTE,
    "hour": TimeframeUnit.HOUR,
    "h": TimeframeUnit.HOUR,
    "day": TimeframeUnit.DAY,
    "d": TimeframeUnit.DAY,
    "week": TimeframeUnit.WEEK,
    "w": TimeframeUnit.WEEK,
    "month": TimeframeUnit.MONTH,
    "m": TimeframeUnit.MONTH,
}
_ALLOWED_AMOUNTS = {
    TimeframeUnit.MINUTE: range(1, 60),
    TimeframeUnit.HOUR: range(1, 24),
    TimeframeUnit.DAY: (1,),
    TimeframeUnit.WEEK: (1,),
    TimeframeUnit.MONTH: (1, 2, 3, 4, 6, 12),
}
_PATTERN = re.compile(r"^(\d{1,2})([A-Za-z]+)$")


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar width such as 1 minute or 4 hours."""

    amount: int
    unit: TimeframeUnit

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """Parse ``text`` (``1Min``, ``5T``, ``1Hour``, ``1D`` ...), naming the value on error."""
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        unit = _ALIASES.get(match.group(2).lower()) if match else None
        # "M" alone means month, "Min" means minute: the alias table keys are lower-case,
        # so single-letter "m" must come from an upper-case "M".
        if match and match.group(2) == "m":
            unit = None
        if match is None or unit is None:
            raise ValueError(f"timeframe {text!r} is not valid; use e.g. 1Min, 5Min, 1Hour or 1Day")
        amount = int(match.group(1))
        allowed = _ALLOWED_AMOUNTS[unit]
        if amount not in allowed:
            choices = f"{allowed[0]}..{allowed[-1]}" if isinstance(allowed, range) else allowed
            raise ValueError(f"timeframe {text!r} is not valid: {unit.value} takes {choices}")
        return cls(amount, unit)

    @property
    def seconds(self) -> int | None:
        """Width in seconds for intraday timeframes, ``None`` for calendar-based ones."""
        if self.unit is TimeframeUnit.MINUTE:
            return self.amount * 60
        if self.unit is TimeframeUnit.HOUR:
            return self.amount * 3600
        return None

    def __str__(self) -> str:
        return f"{self.amount}{self.unit.value}"
