"""When a session's bars are final: the point after which MarketPipe may fetch and keep them.

Minute (and other intraday) bars exist only after their window has closed, and Alpaca
recomputes them for late prints; daily bars are recalculated the next morning. A session is
final ``settle`` after its feed's last bar window ends (sip 20:00 New York, 17:00 on early
closes; iex 17:00), and a daily bar ``settle`` after the next session opens. Nothing that is
not final is requested, written or recorded; the free plan's 15-minute SIP window is covered
because ``settle`` is at least that long.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from marketpipe.markettime.calendar import NEW_YORK, Session, new_york_days_range, next_session
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.markettime.timeutil import require_utc

DEFAULT_SETTLE_MINUTES = 30
# Alpaca's free plan refuses SIP data whose `end` is less than this old.
FREE_PLAN_SIP_DELAY = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Finality:
    """The finality rule for one feed and timeframe."""

    feed: str
    timeframe: Timeframe
    settle: dt.timedelta = dt.timedelta(minutes=DEFAULT_SETTLE_MINUTES)

    def final_at(self, session: Session) -> dt.datetime:
        """The UTC instant from which ``session``'s bars are final."""
        if self.timeframe.unit is TimeframeUnit.DAY:
            return next_session(session.date).open + self.settle
        return session.extended_window(self.feed)[1] + self.settle

    def is_final(self, session: Session, now: dt.datetime) -> bool:
        """Whether ``session`` is final at ``now`` (tz-aware)."""
        return self.final_at(session) <= require_utc(now, "now")

    def split(
        self, sessions: Iterable[Session], now: dt.datetime
    ) -> tuple[list[Session], list[Session]]:
        """``sessions`` divided into the final ones and those not final yet, both in order."""
        final: list[Session] = []
        pending: list[Session] = []
        for session in sessions:
            (final if self.is_final(session, now) else pending).append(session)
        return final, pending

    def request_end(self, session: Session) -> dt.datetime:
        """The latest bar start a request for ``session`` needs to include (UTC, inclusive).

        For intraday bars it is the last second of the feed's window, never later, so a
        request for a final session never reaches into data that is not final.
        """
        if self.timeframe.unit is TimeframeUnit.DAY:
            return new_york_days_range(session.date, session.date)[1]
        return session.extended_window(self.feed)[1] - dt.timedelta(seconds=1)


def describe_final_at(moment: dt.datetime) -> str:
    """``2026-11-24 20:30 EST``: a final-at instant in New York time, for people."""
    return moment.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")
