"""Finality: a session is fetched only once its bars can no longer change; one clock decides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from marketpipe.ingest.bars import StreamSettings, ingest_days
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.markettime import clock
from marketpipe.markettime.calendar import NEW_YORK, Session, trading_sessions
from marketpipe.markettime.finality import Finality, describe_final_at
from marketpipe.markettime.timeframe import Timeframe
from marketpipe.workflow.announce import run_scope_notes
from marketpipe.workflow.config_loading import load_settings
from marketpipe.workflow.settings import ConfigError
from tests.conftest import alpaca_client, start_simulator

ONE_MINUTE, ONE_DAY = Timeframe.parse("1Min"), Timeframe.parse("1Day")
BASE = {"symbols": ["AAPL"], "start": "2026-11-16"}


def new_york(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


def session(day: dt.date) -> Session:
    (found,) = trading_sessions(day, day)
    return found


def test_intraday_sessions_are_final_a_settle_time_after_their_feeds_last_window() -> None:
    tuesday, early_close = session(dt.date(2026, 11, 24)), session(dt.date(2026, 11, 27))
    sip = Finality("sip", ONE_MINUTE, dt.timedelta(minutes=30))
    assert sip.final_at(tuesday) == new_york(2026, 11, 24, 20, 30)
    assert sip.final_at(early_close) == new_york(2026, 11, 27, 17, 30)  # after Thanksgiving
    assert Finality("iex", ONE_MINUTE, dt.timedelta(minutes=15)).final_at(tuesday) == new_york(
        2026, 11, 24, 17, 15
    )
    assert not sip.is_final(tuesday, new_york(2026, 11, 24, 20, 29, 59))
    assert sip.is_final(tuesday, new_york(2026, 11, 24, 20, 30))
    # A request for a final session never reaches past its feed's last bar window.
    assert sip.request_end(tuesday) == new_york(2026, 11, 24, 19, 59, 59)
    assert describe_final_at(sip.final_at(tuesday)) == "2026-11-24 20:30 EST"


def test_daily_bars_are_final_only_after_the_next_session_opens() -> None:
    daily = Finality("sip", ONE_DAY, dt.timedelta(minutes=30))
    # Recalculated the next morning: not final the evening after the close.
    tuesday = session(dt.date(2026, 11, 24))
    assert daily.final_at(tuesday) == new_york(2026, 11, 25, 10, 0)
    assert not daily.is_final(tuesday, new_york(2026, 11, 24, 23, 0))
    # Wednesday's next session is Friday (Thanksgiving), Friday's is Monday.
    assert daily.final_at(session(dt.date(2026, 11, 25))) == new_york(2026, 11, 27, 10, 0)
    assert daily.final_at(session(dt.date(2026, 11, 27))) == new_york(2026, 11, 30, 10, 0)


@pytest.mark.parametrize(
    ("now", "expected_end"),
    [
        (new_york(2026, 11, 24, 14, 0), dt.date(2026, 11, 23)),  # today's session is running
        (new_york(2026, 11, 24, 20, 29), dt.date(2026, 11, 23)),
        (new_york(2026, 11, 24, 20, 30), dt.date(2026, 11, 24)),
        (new_york(2026, 11, 26, 12, 0), dt.date(2026, 11, 25)),  # Thanksgiving
        (new_york(2026, 11, 28, 9, 0), dt.date(2026, 11, 27)),  # Saturday after an early close
        (new_york(2026, 11, 30, 3, 0), dt.date(2026, 11, 27)),  # Monday before the open
    ],
)
def test_end_today_means_the_latest_final_session(now: dt.datetime, expected_end: dt.date) -> None:
    settings = load_settings({**BASE, "end": "today"}, now=now)
    assert settings.end == expected_end
    assert settings.final_days[-1] == expected_end
    assert not settings.pending_sessions


def test_a_range_into_the_future_plans_only_final_sessions() -> None:
    now = new_york(2026, 11, 24, 14, 0)
    settings = load_settings({**BASE, "symbols": ["AAPL", "MSFT"], "end": "2026-12-04"}, now=now)
    assert settings.final_days[-1] == dt.date(2026, 11, 23)
    assert settings.planned_partitions == 2 * len(settings.final_days) == 2 * 6
    pending = [s.date for s in settings.pending_sessions]
    assert pending[0] == dt.date(2026, 11, 24) and pending[-1] == dt.date(2026, 12, 4)
    notes = run_scope_notes(settings)
    assert notes == [
        "not fetched yet: 2026-11-24 (final at 2026-11-24 20:30 EST), 2026-11-25 (final at "
        "2026-11-25 20:30 EST), 2026-11-27 (final at 2026-11-27 17:30 EST) and 5 later "
        "session(s) through 2026-12-04; until then their bars can still change, and the first "
        "run after that fetches them"
    ]
    later = settings.at(new_york(2026, 11, 24, 21, 0))
    assert later.final_days[-1] == dt.date(2026, 11, 24)


def test_a_range_wholly_in_the_future_does_nothing_and_says_why() -> None:
    now = new_york(2026, 11, 24, 14, 0)
    future = load_settings({**BASE, "start": "2026-11-24", "end": "2026-12-04"}, now=now)
    assert future.final_sessions == [] and future.planned_partitions == 0
    (note,) = run_scope_notes(future)
    assert note.startswith("nothing to fetch: no session of 2026-11-24..2026-12-04 is final yet")
    assert "2026-11-24 20:30 EST" in note
    today = load_settings({**BASE, "start": "2026-11-24", "end": "today"}, now=now)
    assert today.final_sessions == []
    assert run_scope_notes(today)[0].startswith("nothing to fetch")


def test_settle_time_is_configurable_but_never_below_the_free_plans_window() -> None:
    now = new_york(2026, 11, 24, 20, 20)
    settled = load_settings({**BASE, "end": "today", "settle_minutes": 15}, now=now)
    assert settled.end == dt.date(2026, 11, 24)
    with pytest.raises(ConfigError, match="config key settle_minutes"):
        load_settings({**BASE, "end": "today", "settle_minutes": 5}, now=now)
    with pytest.raises(ConfigError, match="config key end"):
        load_settings({**BASE, "end": "tomorrow"}, now=now)


def test_the_clock_is_the_real_one_unless_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.NOW_VARIABLE, raising=False)
    before = dt.datetime.now(dt.UTC)
    assert before <= clock.now() <= dt.datetime.now(dt.UTC)
    assert not clock.is_pinned()
    monkeypatch.setenv(clock.NOW_VARIABLE, "2026-11-24T14:00:00-05:00")
    assert clock.now() == dt.datetime(2026, 11, 24, 19, 0, tzinfo=dt.UTC)
    assert load_settings({**BASE, "end": "today"}).end == dt.date(2026, 11, 23)
    monkeypatch.setenv(clock.NOW_VARIABLE, "2026-11-24T14:00:00")
    with pytest.raises(ValueError, match=r"MARKETPIPE_NOW=.* is not an RFC-3339 instant"):
        clock.now()


def test_ingest_refuses_a_session_that_is_not_final(tmp_path: Path) -> None:
    server = start_simulator()
    stream = StreamSettings("demo", ONE_MINUTE, "sip", "raw")
    try:
        with alpaca_client(server) as client, CheckpointStore(tmp_path) as store:
            with pytest.raises(ValueError, match="2026-11-24 is not final until 2026-11-24 20:30"):
                ingest_days(
                    client,
                    store,
                    tmp_path,
                    ["AAPL"],
                    [dt.date(2026, 11, 23), dt.date(2026, 11, 24)],
                    stream,
                    now=new_york(2026, 11, 24, 14, 0),
                )
            with pytest.raises(ValueError, match="2026-11-26 is not an NYSE session"):
                ingest_days(
                    client,
                    store,
                    tmp_path,
                    ["AAPL"],
                    [dt.date(2026, 11, 26)],
                    stream,
                    now=new_york(2026, 11, 30, 14, 0),
                )
    finally:
        server.stop()
    assert server.request_log.entries == []
    assert not (tmp_path / "ohlcv").exists()
