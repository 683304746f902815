"""The vendor's flat files, written from the simulator's own truth.

Massive (Polygon.io) publishes each day's minute bars of every US stock as one gzipped CSV
(``ticker,volume,open,close,high,low,window_start,transactions``, ``window_start`` in epoch
nanoseconds, raw prices, tickers as traded that day), ready the next morning around 11:00
New York time. This module writes those files from the synthetic market the aggregates
endpoint answers from, so a file and the REST pages hold the same bars, and puts them in an
S3-compatible bucket (tests and benchmarks use moto's server). The bytes are deterministic
(gzip without a timestamp): the same truth gives the same ETag, a corrected one a new ETag.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterable
from typing import Any

from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.simulator.polygon_api import PolygonAggregates

FLAT_FILE_HEADER = "ticker,volume,open,close,high,low,window_start,transactions"
READY_AT = dt.time(11, 0)  # New York time, the calendar day after the session


def flat_file_ready_at(day: dt.date) -> dt.datetime:
    """When ``day``'s file is published (UTC)."""
    ready = dt.datetime.combine(day + dt.timedelta(days=1), READY_AT, tzinfo=NEW_YORK)
    return ready.astimezone(dt.UTC)


def day_file(
    aggregates: PolygonAggregates, day: dt.date, tickers: Iterable[str], now: dt.datetime
) -> bytes:
    """``day``'s gzipped CSV: every ticker traded that day among ``tickers`` and the
    simulator's securities, in ticker order, each one's minutes in time order."""
    (session,) = trading_sessions(day, day)
    unknown = aggregates.market.unknown_symbols
    names = sorted({*tickers, *aggregates.book.tickers_on(day)} - unknown)
    lines = [FLAT_FILE_HEADER]
    for ticker in names:
        for bar in aggregates.minute_bars(ticker, session, now):
            lines.append(
                f"{ticker},{bar.v},{bar.o!r},{bar.c!r},{bar.h!r},{bar.l!r},"
                f"{bar.t * 1_000_000_000},{bar.n}"
            )
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)


def publish_flat_files(
    s3: Any,
    bucket: str,
    prefix: str,
    aggregates: PolygonAggregates,
    days: Iterable[dt.date],
    tickers: Iterable[str],
    now: dt.datetime,
) -> list[str]:
    """Put the file of each of ``days`` that is published by ``now`` into ``bucket``
    (boto3 client ``s3``); return the keys written."""
    names = list(tickers)
    written = []
    for day in days:
        if flat_file_ready_at(day) > now:
            continue
        key = f"{prefix.strip('/')}/{day:%Y/%m}/{day.isoformat()}.csv.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=day_file(aggregates, day, names, now))
        written.append(key)
    return written
