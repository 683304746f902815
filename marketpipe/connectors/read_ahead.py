"""Run an iterator one item ahead in a worker thread, so producing the next item (a network
round trip, say) overlaps with the caller's work on the current one."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")

_POLL_SECONDS = 0.05  # how often a parked worker checks whether the reader has gone away


class ReadAhead(Generic[ItemT]):
    """Iterate ``source`` in a worker thread, exactly one item ahead of the reader.

    The worker produces item k+1 while the reader works on item k, then parks until the
    reader takes it: once the reader has taken k items, ``source`` has been asked for at most
    k+1. The worker runs in a copy of the caller's context (log routing, job fields). An
    exception raised by ``source`` is re-raised to the reader at the point it happened.
    ``close()`` stops the worker; it returns once any item in production is finished.
    """

    def __init__(self, source: Iterator[ItemT], name: str = "marketpipe-read-ahead") -> None:
        self._source = source
        self._handoff: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=1)
        self._taken = threading.Semaphore(0)
        self._closed = threading.Event()
        self._parked = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._produce,), name=name, daemon=True
        )
        self._started = False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._hand_over(("item", item)):
                    return
        except BaseException as error:  # handed to the reader, who decides
            self._hand_over(("error", error))
        else:
            self._hand_over(("end", None))
        finally:
            self._parked.set()

    def _hand_over(self, entry: tuple[str, object]) -> bool:
        """Offer ``entry`` and park until the reader takes it; False if closed meanwhile."""
        self._parked.set()  # before the put: the reader clears it when it takes the entry
        self._handoff.put(entry)  # never blocks: the previous entry was taken
        while not self._closed.is_set():
            if self._taken.acquire(timeout=_POLL_SECONDS):
                return True
        return False

    def wait_parked(self, timeout: float) -> bool:
        """Wait until the worker is idle (waiting for the reader, or done); for tests and tools."""
        return self._parked.wait(timeout)

    def __iter__(self) -> Iterator[ItemT]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            kind, value = self._handoff.get()
            self._parked.clear()
            self._taken.release()
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "error":
                raise value  # type: ignore[misc]
            else:
                return

    def close(self) -> None:
        """Stop the worker and wait for it to finish."""
        self._closed.set()
        if self._started:
            self._thread.join()
