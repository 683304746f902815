"""Reading a universe file: who was a member when, in either of the two common shapes.

- **Intervals**: a header ``symbol,start,end`` and one row per membership (``end`` is the
  last day as a member, inclusive; empty while still a member). A symbol may have several
  rows (it left and came back).
- **Snapshots**: a header ``date,tickers`` and one row per change, each the full member list
  from that date on (comma-separated, quoted), as published S&P 500 history files are.

Dates are New York dates (``YYYY-MM-DD``). A problem names the file, the line and the value.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
from pathlib import Path

from marketpipe.connectors.models import check_symbol
from marketpipe.markettime.spans import DaySpan, DaySpans

_ONE_DAY = dt.timedelta(days=1)
INTERVAL_COLUMNS = ("symbol", "start", "end")
SNAPSHOT_COLUMNS = ("date", "tickers")


class UniverseFileError(ValueError):
    """A universe file that cannot be read; the message names the file, line and value."""


def read_universe_file(path: Path | str) -> dict[str, DaySpans]:
    """Each member's days, from an interval or a snapshot file (see the module)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UniverseFileError(
            f"universe file {path} does not exist (a path relative to the directory the "
            "workflow runs in, or absolute)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UniverseFileError(f"universe file {path} cannot be read: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise UniverseFileError(f"universe file {path} is empty")
    header = tuple(column.strip().lower() for column in rows[0])
    body = [(number, row) for number, row in enumerate(rows[1:], start=2) if any(row)]
    if header[:3] == INTERVAL_COLUMNS:
        spans = _intervals(path, body)
    elif header[:2] == SNAPSHOT_COLUMNS:
        spans = _snapshots(path, body)
    else:
        raise UniverseFileError(
            f"universe file {path}: header {','.join(rows[0])!r} is neither "
            f"{','.join(INTERVAL_COLUMNS)!r} (intervals) nor {','.join(SNAPSHOT_COLUMNS)!r} "
            "(snapshots)"
        )
    if not spans:
        raise UniverseFileError(f"universe file {path} names no member")
    return {symbol: DaySpans.of(spans[symbol]) for symbol in sorted(spans)}


def _intervals(path: Path, body: list[tuple[int, list[str]]]) -> dict[str, list[DaySpan]]:
    spans: dict[str, list[DaySpan]] = {}
    for number, row in body:
        cells = [cell.strip() for cell in row] + ["", ""]
        symbol = _symbol(path, number, cells[0])
        first = _date(path, number, "start", cells[1])
        last = _date(path, number, "end", cells[2]) if cells[2] else None
        if first is None:
            raise UniverseFileError(f"universe file {path}, line {number}: start is empty")
        if last is not None and last < first:
            raise UniverseFileError(
                f"universe file {path}, line {number}: end {last} is before start {first}"
            )
        spans.setdefault(symbol, []).append(DaySpan(first, last))
    for symbol, own in spans.items():
        ordered = sorted(own, key=lambda span: span.first or dt.date.min)
        for before, after in itertools.pairwise(ordered):
            if before.last is None or before.overlap(after) is not None:
                raise UniverseFileError(
                    f"universe file {path}: {symbol}'s memberships from {before.first} and "
                    f"from {after.first} overlap; give each stretch once"
                )
    return spans


def _snapshots(path: Path, body: list[tuple[int, list[str]]]) -> dict[str, list[DaySpan]]:
    dated: list[tuple[dt.date, int, set[str]]] = []
    for number, row in body:
        cells = [cell.strip() for cell in row]
        day = _date(path, number, "date", cells[0] if cells else "")
        if day is None:
            raise UniverseFileError(f"universe file {path}, line {number}: date is empty")
        names = ",".join(cells[1:]).split(",")
        tickers = {_symbol(path, number, name.strip()) for name in names if name.strip()}
        dated.append((day, number, tickers))
    dated.sort(key=lambda item: item[0])
    for (day, _, _), (later, number, _) in itertools.pairwise(dated):
        if later == day:
            raise UniverseFileError(
                f"universe file {path}, line {number}: a second snapshot for {day}"
            )
    spans: dict[str, list[DaySpan]] = {}
    for index, (day, _, tickers) in enumerate(dated):
        until = dated[index + 1][0] - _ONE_DAY if index + 1 < len(dated) else None
        for symbol in tickers:
            own = spans.setdefault(symbol, [])
            if own and own[-1].last == day - _ONE_DAY:
                own[-1] = DaySpan(own[-1].first, until)  # still a member: one stretch
            else:
                own.append(DaySpan(day, until))
    return spans


def _symbol(path: Path, number: int, text: str) -> str:
    try:
        return check_symbol(text.upper())
    except ValueError as exc:
        raise UniverseFileError(f"universe file {path}, line {number}: {exc}") from None


def _date(path: Path, number: int, column: str, text: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UniverseFileError(
            f"universe file {path}, line {number}: {column} {text!r} is not a YYYY-MM-DD date"
        ) from None
