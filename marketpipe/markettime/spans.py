"""Runs of days: when a security was listed, when a symbol was a member of a universe."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class DaySpan:
    """The days from ``first`` through ``last``, both included (``None``: unbounded)."""

    first: dt.date | None = None
    last: dt.date | None = None

    def covers(self, day: dt.date) -> bool:
        """Whether ``day`` is in the span."""
        return (self.first is None or self.first <= day) and (self.last is None or day <= self.last)

    def without(self, other: DaySpan) -> list[DaySpan]:
        """The days of this span not in ``other``: none, one or two spans."""
        if self.overlap(other) is None:
            return [self]
        parts = []
        if other.first is not None and (self.first is None or self.first < other.first):
            parts.append(DaySpan(self.first, other.first - _ONE_DAY))
        if other.last is not None and (self.last is None or other.last < self.last):
            parts.append(DaySpan(other.last + _ONE_DAY, self.last))
        return parts

    def overlap(self, other: DaySpan) -> DaySpan | None:
        """The days in both spans, or ``None`` when they share none."""
        firsts = [day for day in (self.first, other.first) if day is not None]
        lasts = [day for day in (self.last, other.last) if day is not None]
        span = DaySpan(max(firsts, default=None), min(lasts, default=None))
        empty = span.first is not None and span.last is not None and span.first > span.last
        return None if empty else span


@dataclass(frozen=True)
class DaySpans:
    """A union of day spans, e.g. a symbol's membership in a universe it left and rejoined."""

    spans: tuple[DaySpan, ...] = (DaySpan(),)

    @classmethod
    def of(cls, spans: Iterable[DaySpan]) -> DaySpans:
        """The union of ``spans``, in order of their first day."""
        return cls(tuple(sorted(spans, key=lambda span: span.first or dt.date.min)))

    @property
    def unbounded(self) -> bool:
        """Whether every day is covered."""
        return DaySpan() in self.spans

    def covers(self, day: dt.date) -> bool:
        """Whether ``day`` is in one of the spans."""
        return any(span.covers(day) for span in self.spans)

    def within(self, span: DaySpan) -> DaySpans:
        """These spans cut to ``span``."""
        return DaySpans.of(
            overlap for own in self.spans if (overlap := own.overlap(span)) is not None
        )

    def without(self, other: DaySpans) -> DaySpans:
        """These spans less the days of ``other``."""
        remaining = list(self.spans)
        for cut in other.spans:
            remaining = [part for span in remaining for part in span.without(cut)]
        return DaySpans.of(remaining)

    def days(self, days: Sequence[dt.date]) -> tuple[dt.date, ...]:
        """The ones of ``days`` covered."""
        if self.unbounded:
            return tuple(days)
        return tuple(day for day in days if self.covers(day))


EVERY_DAY = DaySpans()
NO_DAY = DaySpans(())
