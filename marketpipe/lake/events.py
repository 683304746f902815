"""News joined to bars: for each (article, symbol), the first bar at or after the article and
the returns over given horizons, for event studies.

The entry is the open of the first bar whose start is at or after ``created_at`` (the next
session's first bar for news published after the close). The return over ``h`` minutes is
the close of the last bar starting before ``entry + h`` over the entry price, minus one,
within the entry's session; it is null when the horizon runs past the session's end (the
extended window, or the regular close with ``session="regular"``) or no bar started in it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from marketpipe.connectors.models import NEWS_SCHEMA
from marketpipe.lake.compare_sides import lake_source
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import as_store, present_partitions
from marketpipe.markettime.calendar import new_york_date, next_session, trading_sessions

Session = Literal["extended", "regular"]


def news_events(
    articles: pa.Table,
    *,
    data_dir: Path | str = "data",
    horizons: Sequence[int] = (1, 5, 30),
    session: Session = "extended",
    symbols: Sequence[str] | None = None,
    output: Literal["arrow", "pandas"] = "arrow",
) -> Any:
    """One row per (article, symbol it names; only ``symbols`` if given, and only symbols
    with bars in the lake): ``id``, ``symbol``, ``created_at``, ``headline``,
    ``bar_timestamp``, ``entry_price`` and ``return_<h>m`` per horizon (minutes)."""
    if session not in ("extended", "regular"):
        raise ValueError(f"session must be 'extended' or 'regular', got {session!r}")
    if not horizons or any(not isinstance(h, int) or h < 1 for h in horizons):
        raise ValueError(f"horizons must be whole minutes >= 1, got {list(horizons)}")
    missing = set(NEWS_SCHEMA.names) - set(articles.column_names)
    if {"id", "created_at", "symbols"} & missing:
        raise ValueError("articles must be a table from read_news (id, created_at, symbols)")
    store = as_store(data_dir)
    events = _explode(articles, None if symbols is None else set(symbols))
    stored = {symbol: day for symbol, day in present_partitions(store, sorted(events))}
    rows = []
    for symbol in sorted(set(events) & set(stored)):
        feed = lake_source(store, (symbol, stored[symbol])).feed
        rows.extend(_symbol_events(store, symbol, events[symbol], horizons, session, feed))
    rows.sort(key=lambda row: (row["created_at"], row["id"], row["symbol"]))
    table = pa.Table.from_pylist(rows, schema=_schema(horizons))
    return table.to_pandas() if output == "pandas" else table


def _schema(horizons: Sequence[int]) -> pa.Schema:
    stamp = pa.timestamp("ns", tz="UTC")
    return pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("symbol", pa.string()),
            pa.field("created_at", stamp),
            pa.field("headline", pa.string()),
            pa.field("bar_timestamp", stamp),
            pa.field("entry_price", pa.float64()),
            *(pa.field(f"return_{h}m", pa.float64()) for h in horizons),
        ]
    )


def _explode(articles: pa.Table, wanted: set[str] | None) -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = {}
    columns = articles.select(["id", "created_at", "headline", "symbols"]).to_pylist()
    for article in columns:
        for symbol in dict.fromkeys(article["symbols"]):
            if wanted is None or symbol in wanted:
                events.setdefault(symbol, []).append(article)
    return events


def _symbol_events(
    store: Any,
    symbol: str,
    articles: list[dict[str, Any]],
    horizons: Sequence[int],
    session: Session,
    feed: str,
) -> list[dict[str, Any]]:
    first = min(new_york_date(article["created_at"]) for article in articles)
    last = next_session(max(new_york_date(article["created_at"]) for article in articles)).date
    bars = read_bars(symbol, first, last, data_dir=store, missing="skip", session=session)
    stamps = bars["timestamp"].cast(pa.int64()).to_numpy()
    opens, closes = bars["open"].to_numpy(), bars["close"].to_numpy()
    ends = _session_ends(first, last, session, feed)
    rows = []
    for article in articles:
        created = int(article["created_at"].timestamp() * 1_000_000) * 1_000
        row = {
            "id": article["id"],
            "symbol": symbol,
            "created_at": article["created_at"],
            "headline": article["headline"],
            "bar_timestamp": None,
            "entry_price": None,
            **{f"return_{h}m": None for h in horizons},
        }
        index = int(np.searchsorted(stamps, created, side="left"))
        if index < len(stamps):
            entry_at = int(stamps[index])
            end = ends[new_york_date(_moment(entry_at))]
            row["bar_timestamp"] = _moment(entry_at)
            row["entry_price"] = float(opens[index])
            for h in horizons:
                target = entry_at + h * 60_000_000_000
                last_bar = int(np.searchsorted(stamps, target, side="left")) - 1
                if target <= end and last_bar >= index:
                    row[f"return_{h}m"] = float(closes[last_bar] / opens[index] - 1.0)
        rows.append(row)
    return rows


def _session_ends(first: dt.date, last: dt.date, session: Session, feed: str) -> dict[dt.date, int]:
    """Per session day: when its bars end (ns), for the lake's feed."""
    ends = {}
    for day in trading_sessions(first, last):
        end = day.close if session == "regular" else day.extended_window(feed)[1]
        ends[day.date] = int(end.timestamp()) * 1_000_000_000
    return ends


def _moment(nanoseconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(nanoseconds / 1e9, dt.UTC)
