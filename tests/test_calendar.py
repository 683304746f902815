"""NYSE sessions: computed by exchange_calendars once, then read from the on-disk cache."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketpipe.markettime import calendar
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MARKETPIPE_CACHE_DIR", str(tmp_path))
    calendar._sessions_for_year.cache_clear()
    yield tmp_path
    calendar._sessions_for_year.cache_clear()


def test_cached_sessions_equal_computed_ones(cache_dir: Path) -> None:
    computed = calendar._compute_sessions(2024)
    first = trading_sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    (cached,) = list((cache_dir / "calendars").glob("XNYS-*-2024.json"))
    calendar._sessions_for_year.cache_clear()
    second = trading_sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert tuple(first) == tuple(second) == computed
    assert len(second) == 252 and cached.stat().st_size > 0
    friday = next(s for s in second if s.date == dt.date(2024, 11, 29))
    assert friday.early_close and friday.close.astimezone(NEW_YORK).time() == dt.time(13, 0)
    assert dt.date(2024, 3, 29) not in {s.date for s in second}  # Good Friday


def test_an_unreadable_cache_file_is_recomputed(cache_dir: Path) -> None:
    trading_sessions(dt.date(2023, 1, 1), dt.date(2023, 1, 31))
    (cached,) = list((cache_dir / "calendars").glob("XNYS-*-2023.json"))
    cached.write_text('[["not json')
    calendar._sessions_for_year.cache_clear()
    sessions = trading_sessions(dt.date(2023, 1, 1), dt.date(2023, 1, 31))
    assert [s.date for s in sessions][:2] == [dt.date(2023, 1, 3), dt.date(2023, 1, 4)]
    assert cached.read_text().startswith('[["2023-01-03"')
