"""The one source of "now" for the workflow, the CLI and the simulator.

By default it is the real clock. Setting ``MARKETPIPE_NOW`` to an RFC-3339 instant with an
offset (``2026-11-24T14:00:00-05:00``) pins it, in this process and every process it starts:
tests use that to run the workflow "at 14:00 on a session day", then "later". Only for
testing and replaying: against the real API a clock ahead of the real one asks for data
that does not exist yet.
"""

from __future__ import annotations

import datetime as dt
import os

from marketpipe.markettime.timeutil import parse_rfc3339

NOW_VARIABLE = "MARKETPIPE_NOW"


def now() -> dt.datetime:
    """The current instant, tz-aware UTC (``$MARKETPIPE_NOW`` when set)."""
    pinned = os.environ.get(NOW_VARIABLE, "").strip()
    if not pinned:
        return dt.datetime.now(dt.UTC)
    try:
        return parse_rfc3339(pinned, NOW_VARIABLE)
    except ValueError:
        raise ValueError(
            f"{NOW_VARIABLE}={pinned!r} is not an RFC-3339 instant with an offset; use e.g. "
            "2026-11-24T14:00:00-05:00, or unset it to use the real clock"
        ) from None


def now_timestamp() -> float:
    """:func:`now` as epoch seconds."""
    return now().timestamp()


def is_pinned() -> bool:
    """True when ``$MARKETPIPE_NOW`` replaces the real clock."""
    return bool(os.environ.get(NOW_VARIABLE, "").strip())
