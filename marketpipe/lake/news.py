"""News in the lake: one Parquet file per New York day of ``created_at``, beside the bars.

``<data_dir>/news/year=YYYY/month=MM/day=DD/news.parquet`` holds every article first published
that day about any configured symbol, once (an article naming several symbols is one row,
its ``symbols`` a list), in its latest version, sorted by ``created_at`` and id. A day with
no article is an empty file, so "fetched, nothing" differs from "not fetched"; the footer
names the symbols whose news the file is complete for (a symbol added later is fetched for
the days stored before it). Records the
vendor sent that were not valid articles go to ``_quarantine/news/.../rejected.parquet``
with their reasons. The bytes depend on the articles only, so a rerun writes the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from marketpipe.connectors.models import NEWS_SCHEMA
from marketpipe.connectors.news import RejectedArticle
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.ledger_rows import NewsEntry
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.storage import (
    DAY_KEY,
    Output,
    WrittenFile,
    as_output,
    as_store,
    lists_naming_any,
    parquet_bytes,
    read_table_at,
    read_verified,
)
from marketpipe.markettime.calendar import new_york_date
from marketpipe.markettime.timeutil import new_york_day

NEWS_DIR = "news"
NEWS_FILE = "news.parquet"
REJECTED_FILE = "rejected.parquet"
QUARANTINE_NEWS_DIR = "_quarantine/news"
REJECTED_SCHEMA = pa.schema(
    [pa.field("reason", pa.string()), pa.field("record", pa.string()), pa.field("page", pa.int64())]
)
_ORDER = [("created_at", "ascending"), ("id", "ascending")]
SYMBOLS_KEY = "marketpipe.news_symbols"  # footer: whose news the day's file is complete for
Lake = LakeStore | Path | str


class MissingNewsError(LookupError):
    """Some requested news days are not in the lake; the message names them."""

    def __init__(self, missing: list[dt.date]) -> None:
        self.missing = missing
        shown = ", ".join(day.isoformat() for day in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        super().__init__(
            f"news of {len(missing)} day(s) not in the lake: {shown}{more}; run the workflow "
            "(news.fetch: true) or pass missing='skip'"
        )


def _day_dir(area: str, day: dt.date) -> str:
    return f"{area}/year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def news_key(day: dt.date) -> str:
    """The key, relative to the lake's root, of one New York day's articles."""
    return f"{_day_dir(NEWS_DIR, day)}/{NEWS_FILE}"


def news_path(data_dir: Path | str, day: dt.date) -> Path:
    """The local path of one day's news file."""
    return Path(data_dir) / news_key(day)


def rejected_key(day: dt.date) -> str:
    """Where one day's refused records are kept apart."""
    return f"{_day_dir(QUARANTINE_NEWS_DIR, day)}/{REJECTED_FILE}"


def calendar_days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every calendar day from ``first`` to ``last`` (news has no trading calendar)."""
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]


def present_news_days(lake: Lake) -> set[dt.date]:
    """The days that have a news file, found by one listing of the news area."""
    found = set()
    for key in as_store(lake).list(NEWS_DIR):
        if not key.endswith(f"/{NEWS_FILE}"):
            continue
        parts = dict(part.split("=", 1) for part in key.split("/")[1:4] if "=" in part)
        try:
            found.add(dt.date(int(parts["year"]), int(parts["month"]), int(parts["day"])))
        except (KeyError, ValueError):
            continue  # not a file of ours
    return found


def current_news(table: pa.Table) -> pa.Table:
    """Articles in the current schema; a file written before the ``raw`` column (releases
    before Massive's news) reads with it empty."""
    if "raw" not in table.column_names:
        table = table.append_column("raw", pa.nulls(table.num_rows, pa.string()))
    return table.cast(NEWS_SCHEMA)


def latest_versions(table: pa.Table) -> pa.Table:
    """One row per article id, the one with the latest ``updated_at``, in the stored order."""
    if table.num_rows == 0:
        return current_news(table)
    ordered = current_news(table).sort_by([("id", "ascending"), ("updated_at", "ascending")])
    ids = ordered["id"].to_numpy()
    last = [
        index for index in range(len(ids)) if index + 1 == len(ids) or ids[index + 1] != ids[index]
    ]
    return ordered.take(pa.array(last, pa.int64())).sort_by(_ORDER)


def split_by_day(table: pa.Table) -> dict[dt.date, pa.Table]:
    """Articles grouped by the New York day of ``created_at``."""
    days = [new_york_date(moment) for moment in table["created_at"].to_pylist()]
    groups: dict[dt.date, list[int]] = {}
    for index, day in enumerate(days):
        groups.setdefault(day, []).append(index)
    return {day: table.take(pa.array(rows, pa.int64())) for day, rows in groups.items()}


def news_file(day: dt.date, table: pa.Table, symbols: Sequence[str]) -> tuple[WrittenFile, bytes]:
    """One day's file (its key, articles and hash) and bytes, complete for ``symbols``' news:
    the same articles and symbols always give the same bytes."""
    latest = latest_versions(table)
    metadata = {DAY_KEY: day.isoformat(), SYMBOLS_KEY: ",".join(sorted(set(symbols)))}
    data = parquet_bytes(latest, metadata)
    return WrittenFile(news_key(day), latest.num_rows, _sha256(data)), data


def publish_news(
    lake: Lake,
    day: dt.date,
    table: pa.Table,
    symbols: Sequence[str],
    current_sha256: str | None = None,
) -> tuple[WrittenFile, bool]:
    """Write one day's articles, complete for ``symbols``' news, atomically (readers see the
    old file or the new one) unless the file already holds these bytes; ``current_sha256``
    is the hash of the file known to be there, ``None`` if unknown. Returns the file and
    whether it was written."""
    written, data = news_file(day, table, symbols)
    if written.sha256 == current_sha256:
        return written, False
    as_store(lake).put(written.key, data, crash_point_name="parquet_write")
    return written, True


def publish_rejected(lake: Lake, day: dt.date, rejected: Sequence[RejectedArticle]) -> None:
    """Keep the records refused for ``day`` apart, with their reasons (replaces earlier ones)."""
    rows = [{"reason": r.reason, "record": r.record, "page": r.page} for r in rejected]
    table = pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)
    as_store(lake).put(rejected_key(day), parquet_bytes(table, {DAY_KEY: day.isoformat()}))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_news_day(lake: Lake, day: dt.date) -> pa.Table:
    """One stored day's articles (page checksums verified)."""
    store = as_store(lake)
    return current_news(read_table_at(store, news_key(day)))


def parse_news_file(data: bytes, where: str) -> pa.Table:
    """The articles in a news file's bytes (page checksums verified; ``where`` names it)."""
    return current_news(read_verified(pa.BufferReader(data), where))


@dataclass(frozen=True)
class StoredNews:
    """One stored day's file: its hash, articles, and whose news it is complete for."""

    sha256: str
    articles: pa.Table
    symbols: tuple[str, ...]


def stored_news_file(lake: Lake, day: dt.date) -> StoredNews:
    """One stored day's file, from one read (``FileNotFoundError`` when there is none)."""
    store = as_store(lake)
    data = store.get(news_key(day))
    where = f"{store.uri}/{news_key(day)}"
    table = read_verified(pa.BufferReader(data), where)
    covered = (table.schema.metadata or {}).get(SYMBOLS_KEY.encode(), b"").decode()
    symbols = tuple(symbol for symbol in covered.split(",") if symbol)
    return StoredNews(_sha256(data), current_news(table), symbols)


def read_news(
    symbols: str | Sequence[str] | None,
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: Path | str = "data",
    output: Output = "arrow",
    missing: Literal["error", "skip"] = "error",
) -> Any:
    """The latest version of each article first published on New York days ``start..end``
    (inclusive) that names any of ``symbols`` (``None``: every stored article), sorted by
    ``created_at`` and id; ``output`` is ``arrow``, ``pandas`` or ``polars``. Days not in
    the lake raise :class:`MissingNewsError` naming them, unless ``missing="skip"``."""
    first, last = new_york_day(start, "start"), new_york_day(end, "end")
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    if output not in ("arrow", "pandas", "polars"):
        raise ValueError(f"output must be 'arrow', 'pandas' or 'polars', got {output!r}")
    store = as_store(data_dir)
    present = present_news_days(store)
    days = calendar_days(first, last)
    absent = [day for day in days if day not in present]
    if absent and missing == "error":
        raise MissingNewsError(absent)
    tables = [read_news_day(store, day) for day in days if day in present]
    table = pa.concat_tables([NEWS_SCHEMA.empty_table(), *tables])
    if symbols is not None:
        table = table.filter(names_any(table, [symbols] if isinstance(symbols, str) else symbols))
    return as_output(table.sort_by(_ORDER), output)


def names_any(table: pa.Table, symbols: Sequence[str]) -> pa.Array:
    """Per article: whether its ``symbols`` list names any of ``symbols``."""
    return pa.array(lists_naming_any(table["symbols"], symbols), pa.bool_())


def adopt_unrecorded_news(lake: Lake, store: CheckpointStore, run_id: str) -> list[dt.date]:
    """Record news files the ledger does not know (a crash between a file and its row, a
    job on another machine, a lost ledger); forget rows whose file is gone. A file is
    complete by construction (atomic writes), so its bytes are what the row records."""
    recorded = store.news_entries()
    present = present_news_days(lake)
    adopted = []
    for day in sorted(present - set(recorded)):
        stored = stored_news_file(lake, day)
        rows = stored.articles.num_rows
        store.record_news(NewsEntry(day, rows, stored.sha256, 0, run_id, stored.symbols))
        adopted.append(day)
    store.forget_news(sorted(set(recorded) - present))
    return adopted
