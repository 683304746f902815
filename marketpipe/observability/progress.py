"""One live progress line on a terminal for long loops (verify, migrate, reindex ...).

On a terminal the line is rewritten in place at most a few times a second and cleared at the
end; anywhere else (a cron log, a pipe, a test) nothing is printed: the command's own result
lines say what happened.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

Item = TypeVar("Item")


def with_progress(
    items: Iterable[Item],
    total: int,
    label: str,
    *,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    every: float = 0.25,
) -> Iterator[Item]:
    """Yield ``items``, showing ``label: done/total (pct), rate/s, ~ETA`` on a terminal."""
    out = stream if stream is not None else sys.stderr
    live = total > 0 and out.isatty()
    started = last = clock()
    for done, item in enumerate(items, start=1):
        yield item
        now = clock()
        if live and (now - last >= every or done == total):
            last = now
            rate = done / max(now - started, 1e-9)
            left = (total - done) / rate if rate else 0.0
            out.write(
                f"\r{label}: {done:,}/{total:,} ({100 * done / total:.0f}%), "
                f"{rate:,.0f}/s, about {left:.0f} s left   "
            )
            out.flush()
    if live:
        out.write("\r" + " " * 80 + "\r")
        out.flush()
