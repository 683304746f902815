"""ReadAhead: the next item is produced in a worker thread, in order, errors in place."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from marketpipe.connectors.read_ahead import ReadAhead

FIELD: contextvars.ContextVar[str] = contextvars.ContextVar("field", default="unset")


def test_items_arrive_in_order_from_another_thread() -> None:
    threads = []

    def source() -> Iterator[int]:
        for number in range(5):
            threads.append(threading.get_ident())
            yield number

    ahead = ReadAhead(source())
    assert list(ahead) == [0, 1, 2, 3, 4]
    ahead.close()
    assert set(threads) != {threading.get_ident()}


def test_an_error_arrives_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("page 2 is broken")

    received = []
    ahead = ReadAhead(source())
    with pytest.raises(ValueError, match="page 2 is broken"):
        for item in ahead:
            received.append(item)
    ahead.close()
    assert received == [1]


def test_the_worker_is_exactly_one_item_ahead_of_the_reader() -> None:
    produced = []

    def source() -> Iterator[int]:
        for number in range(5):
            produced.append(number)
            yield number

    ahead = ReadAhead(source())
    iterator = iter(ahead)
    for taken in range(1, 6):
        assert next(iterator) == taken - 1
        assert len(produced) <= taken + 1
        assert ahead.wait_parked(timeout=30)
        assert len(produced) == min(taken + 1, 5)
    assert next(iterator, None) is None
    ahead.close()


def test_closing_early_stops_the_worker_one_item_ahead() -> None:
    produced = []

    def source() -> Iterator[int]:
        for number in range(100):
            produced.append(number)
            yield number

    ahead = ReadAhead(source())
    iterator = iter(ahead)
    assert next(iterator) == 0
    ahead.close()
    # One item handed over, at most one being produced when close came.
    assert len(produced) <= 2
    assert not ahead._thread.is_alive()


def test_the_worker_sees_the_callers_context() -> None:
    def source() -> Iterator[str]:
        yield FIELD.get()

    token = FIELD.set("job AAPL")
    try:
        ahead = ReadAhead(source())
    finally:
        FIELD.reset(token)
    assert list(ahead) == ["job AAPL"]
    ahead.close()
