"""What a row of docs/benchmarks.md's table is, shared by the modules that define rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One line of the table: what is measured, the target, the number, whether it is met."""

    what: str
    target: str
    measured: Callable[[Results], str]
    met: Callable[[Results], bool | None]


def ms(seconds: float) -> str:
    """Seconds as milliseconds, one decimal below 100 ms."""
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"
