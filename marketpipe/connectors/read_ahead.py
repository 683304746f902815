"""Run an iterator one item ahead in a worker thread, so producing the next item (a network
round trip, say) overlaps with the caller's work on the current one."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")

_POLL_SECONDS = 0.05  # how often a blocked worker checks whether the reader has gone away


class ReadAhead(Generic[ItemT]):
    """Iterate ``source`` in a worker thread, holding at most one finished item in reserve.

    The worker runs in a copy of the caller's context (log routing, job fields). An
    exception raised by ``source`` is re-raised to the reader at the point it happened.
    ``close()`` stops the worker; it returns once any item in production is finished.
    """

    def __init__(self, source: Iterator[ItemT], name: str = "marketpipe-read-ahead") -> None:
        self._source = source
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._produce,), name=name, daemon=True
        )
        self._started = False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._offer(("item", item)):
                    return
        except BaseException as error:  # handed to the reader, who decides
            self._offer(("error", error))
        else:
            self._offer(("end", None))

    def _offer(self, entry: tuple[str, object]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[ItemT]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            kind, value = self._queue.get()
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
