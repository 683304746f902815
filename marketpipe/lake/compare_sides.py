"""The two sides of a reconciliation: what each lake holds, and where its bars came from."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from marketpipe.lake.objects import LakeStore
from marketpipe.lake.one_sided import BarSource, Partition
from marketpipe.lake.storage import LAKE_DIR, partition_key, present_partitions, read_table_at
from marketpipe.lake.ticks import tick_key


@dataclass(frozen=True)
class LakeSource:
    """Where a lake's bars came from, as its partitions' metadata say."""

    uri: str
    vendor: str
    feed: str


def held_partitions(
    store: LakeStore,
    start: dt.date | None,
    end: dt.date | None,
    wanted: list[str] | None,
    source: BarSource = "bars",
) -> set[Partition]:
    """The (symbol, day) partitions of ``wanted`` (``None``: all) a lake holds from ``start``
    to ``end`` (``None``: open), of bars or of trades."""
    area = LAKE_DIR if source == "bars" else "trades"
    return {
        (symbol, day)
        for symbol, day in present_partitions(store, wanted, area)
        if (start is None or day >= start) and (end is None or day <= end)
    }


def lake_source(
    store: LakeStore, partition: tuple[str, dt.date], source: BarSource = "bars"
) -> LakeSource:
    """The vendor and feed a lake's bars (or trades) came from, read from one file's
    metadata; a side of rolled-up trades is named ``<lake> (trades)``."""
    key = partition_key(*partition) if source == "bars" else tick_key("trades", *partition)
    metadata = read_table_at(store, key).schema.metadata or {}

    def value(key: str) -> str:
        return metadata.get(f"marketpipe.{key}".encode(), b"unknown").decode()

    uri = store.uri if source == "bars" else f"{store.uri} (trades)"
    return LakeSource(uri, value("vendor"), value("feed"))
