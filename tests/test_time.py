"""Timeframes and timestamps: Alpaca notation, tz-aware UTC, naive values refused."""

from __future__ import annotations

import datetime as dt

import pytest

from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit
from marketpipe.markettime.timeutil import format_rfc3339, parse_rfc3339, require_utc


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("1Min", 1, TimeframeUnit.MINUTE),
        ("15T", 15, TimeframeUnit.MINUTE),
        ("4H", 4, TimeframeUnit.HOUR),
        ("1Hour", 1, TimeframeUnit.HOUR),
        ("1D", 1, TimeframeUnit.DAY),
        ("1Week", 1, TimeframeUnit.WEEK),
        ("6M", 6, TimeframeUnit.MONTH),
    ],
)
def test_timeframes_parse_in_alpaca_notation(text: str, amount: int, unit: TimeframeUnit) -> None:
    assert Timeframe.parse(text) == Timeframe(amount, unit)


@pytest.mark.parametrize("text", ["60Min", "0Min", "24Hour", "2Day", "5Month", "1m", "Min", "1X"])
def test_bad_timeframes_name_the_value(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        Timeframe.parse(text)


def test_naive_datetimes_are_rejected_not_guessed() -> None:
    with pytest.raises(ValueError, match="start: 2024-01-02T09:30:00 has no timezone"):
        require_utc(dt.datetime(2024, 1, 2, 9, 30), "start")
    with pytest.raises(ValueError, match="has no timezone"):
        parse_rfc3339("2024-01-02T09:30:00")
    with pytest.raises(ValueError, match="is not an RFC-3339"):
        parse_rfc3339("yesterday")


def test_rfc3339_round_trip_and_fractions() -> None:
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert format_rfc3339(dt.datetime(2024, 1, 2, 4, 0, tzinfo=eastern)) == "2024-01-02T09:00:00Z"
    assert format_rfc3339(dt.datetime(2024, 1, 2, 9, 0, 0, 250000, dt.UTC)) == (
        "2024-01-02T09:00:00.25Z"
    )
    parsed = parse_rfc3339("2024-01-02T09:00:00.123456789Z")
    assert parsed == dt.datetime(2024, 1, 2, 9, 0, 0, 123456, dt.UTC)
