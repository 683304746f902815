"""Time helpers: everything is tz-aware UTC; naive datetimes are rejected, never guessed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

UTC = dt.UTC


def require_utc(value: dt.datetime, name: str = "datetime") -> dt.datetime:
    """Return ``value`` converted to UTC, refusing naive datetimes."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(
            f"{name}: {value.isoformat()} has no timezone; pass a tz-aware datetime "
            "(for example with tzinfo=datetime.UTC)"
        )
    return value.astimezone(UTC)


def format_rfc3339(value: dt.datetime) -> str:
    """Format an aware datetime as RFC-3339 UTC with a ``Z`` suffix (fraction only if needed)."""
    value = require_utc(value)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(text: str, name: str = "timestamp") -> dt.datetime:
    """Parse an RFC-3339 timestamp with an explicit offset (``Z`` or ``±hh:mm``) into UTC.

    Fractions finer than microseconds are truncated; a missing offset is an error.
    """
    raw = text.strip()
    head, sep, tail = raw.partition(".")
    if sep:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        raw = head + "." + tail[: min(digits, 6)] + tail[digits:]
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an RFC-3339 timestamp") from None
    return require_utc(parsed, name)


def dates_as_text(value: Any) -> Any:
    """YAML turns ``2024-01-02`` into a date; JSON schema expects the ISO text."""
    if isinstance(value, dict):
        return {key: dates_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [dates_as_text(item) for item in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def sorted_days(values: Iterable[dt.date | str]) -> list[dt.date]:
    """Dates given as dates or ``YYYY-MM-DD`` text (as Snakemake params carry them), sorted."""
    return sorted(day if isinstance(day, dt.date) else dt.date.fromisoformat(day) for day in values)


def new_york_day(value: dt.date | str, name: str) -> dt.date:
    """A New York date given as a date or ``YYYY-MM-DD`` (a datetime is refused: a day is
    meant, not an instant); errors name ``name``."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"{name}: pass a New York date (datetime.date or 'YYYY-MM-DD')")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a date such as 2024-01-02") from None
