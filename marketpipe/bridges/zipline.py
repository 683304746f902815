"""The lake as a zipline-reloaded data bundle: ``register_bundle`` in
``~/.zipline/extension.py``, then ``zipline ingest -b marketpipe``.

- Minute bars of the regular session only (09:30 to the close, early closes included):
  zipline's ``XNYS`` calendar has 390 minutes a day, so the extended hours are dropped. zipline
  labels a minute by its close, so the lake's 09:30 bar (stamped at its open) is zipline's
  09:31. zipline keeps prices in thousandths.
- Daily bars rolled up from the same regular-session minutes; a session without trades
  (a halt) has no prices and zero volume.
- Prices unadjusted, as zipline expects: the lake's splits (and stock dividends) and cash
  dividends go to its adjustment writer, which adjusts at read time.
- One asset per symbol, over the days the lake holds; with a security master, one symbol
  mapping per ticker the security traded under (a rename is one asset), and a delisted
  security's positions are closed the day after its last session.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from marketpipe.bridges.common import require_engine, vendor_venue
from marketpipe.lake.actions import actions_of
from marketpipe.lake.adjustment import DIVIDEND_TYPES, SPLIT_TYPES, split_ratio
from marketpipe.lake.identity import stored_identity
from marketpipe.lake.objects import LakeStore
from marketpipe.lake.read_plan import sorted_symbols
from marketpipe.lake.reader import read_bars
from marketpipe.lake.securities import TickerInterval, read_securities
from marketpipe.lake.storage import as_store, present_partitions
from marketpipe.markettime.calendar import NEW_YORK

CALENDAR = "XNYS"
MINUTES_PER_DAY = 390


def register_bundle(
    name: str = "marketpipe",
    data_dir: Path | str = "data",
    symbols: Sequence[str] | None = None,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
) -> None:
    """Register the lake at ``data_dir`` as zipline bundle ``name`` (for
    ``~/.zipline/extension.py``): ``symbols`` (default: every symbol with bars), from
    ``start`` to ``end`` (New York dates; default: the first and last day the lake holds).
    With all three given the lake is not read until ``zipline ingest`` (zipline loads the
    extension at every command)."""
    bundles = require_engine("zipline.data.bundles", "zipline-reloaded")
    import pandas as pd

    lake = as_store(data_dir)
    if symbols is None or start is None or end is None:
        chosen_symbols = None if symbols is None else list(symbols)
        present = present_partitions(lake, chosen_symbols)
        if not present:
            raise ValueError(
                f"{lake.uri} holds no bars of {symbols or 'any symbol'}; run the workflow first"
            )
        symbols = symbols if symbols is not None else sorted({s for s, _ in present})
        start = start if start is not None else min(day for _, day in present)
        end = end if end is not None else max(day for _, day in present)
    first, last = _date(start), _date(end)
    if last < first:
        raise ValueError(f"end ({last}) is before start ({first})")
    bundles.register(
        name,
        _Ingest(lake, sorted_symbols(list(symbols)), first, last),
        calendar_name=CALENDAR,
        start_session=pd.Timestamp(first),
        end_session=pd.Timestamp(last),
        minutes_per_day=MINUTES_PER_DAY,
    )


class _Ingest:
    """zipline's ingest function for one lake, symbols and range."""

    def __init__(self, lake: LakeStore, symbols: list[str], first: dt.date, last: dt.date) -> None:
        self.lake, self.symbols, self.first, self.last = lake, symbols, first, last

    def __call__(
        self,
        environ: Any,
        asset_db_writer: Any,
        minute_bar_writer: Any,
        daily_bar_writer: Any,
        adjustment_writer: Any,
        calendar: Any,
        start_session: Any,
        end_session: Any,
        cache: Any,
        show_progress: bool,
        output_dir: str,
    ) -> None:
        """Write the assets, minute and daily bars, splits and dividends."""
        identity = stored_identity(self.lake)
        exchange = vendor_venue(identity.vendor) if identity else "US"
        sids = {symbol: sid for sid, symbol in enumerate(self.symbols)}
        daily = read_bars(
            self.symbols,
            self.first,
            self.last,
            data_dir=self.lake,
            session="regular",
            timeframe="1Day",
        )
        spans = _spans(daily, self.symbols)
        minutes = read_bars(
            self.symbols, self.first, self.last, data_dir=self.lake, session="regular"
        )
        minute_bar_writer.write(_minute_frames(minutes, sids), show_progress=show_progress)
        sessions = calendar.sessions_in_range(start_session, end_session)
        daily_bar_writer.write(
            _daily_frames(daily, sids, spans, sessions), show_progress=show_progress
        )
        asset_db_writer.write(
            equities=_equities(self.symbols, spans, read_securities(self.lake), exchange),
            exchanges=_exchanges(exchange),
        )
        splits, dividends = _adjustments(actions_of(self.lake, self.symbols), sids, spans)
        adjustment_writer.write(splits=splits, dividends=dividends)


def _date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _spans(daily: pa.Table, symbols: list[str]) -> dict[str, tuple[dt.date, dt.date]]:
    """Each symbol's first and last New York day with regular-session bars (from its daily
    bars, sorted by symbol then time)."""
    spans: dict[str, tuple[dt.date, dt.date]] = {}
    for symbol, stamp in zip(
        daily["symbol"].to_pylist(), daily["timestamp"].to_pylist(), strict=True
    ):
        day = stamp.astimezone(NEW_YORK).date()
        spans[symbol] = (spans.get(symbol, (day, day))[0], day)
    missing = [symbol for symbol in symbols if symbol not in spans]
    if missing:
        raise ValueError(
            f"no regular-session bars of {', '.join(missing)} in the range; leave them out"
        )
    return spans


def _minute_frames(minutes: pa.Table, sids: dict[str, int]) -> Iterator[tuple[int, Any]]:
    """(sid, frame) per symbol, each minute labelled by its close."""
    import pandas as pd

    frame = minutes.select(["symbol", "timestamp", "open", "high", "low", "close", "volume"])
    data = frame.to_pandas()
    data["symbol"] = data["symbol"].astype(str)
    data["timestamp"] = data["timestamp"] + pd.Timedelta(minutes=1)
    for symbol, group in data.groupby("symbol", sort=True):
        yield sids[symbol], group.drop(columns="symbol").set_index("timestamp")


def _daily_frames(
    daily: pa.Table,
    sids: dict[str, int],
    spans: dict[str, tuple[dt.date, dt.date]],
    sessions: Any,
) -> Iterator[tuple[int, Any]]:
    """(sid, frame) per symbol: every session of its span, a halted one without prices."""
    import pandas as pd

    data = daily.select(["symbol", "timestamp", "open", "high", "low", "close", "volume"])
    frame = data.to_pandas()
    frame["symbol"] = frame["symbol"].astype(str)
    frame["session"] = (
        frame["timestamp"].dt.tz_convert("America/New_York").dt.tz_localize(None).dt.normalize()
    )
    for symbol, group in frame.groupby("symbol", sort=True):
        first, last = spans[symbol]
        wanted = sessions[(sessions >= pd.Timestamp(first)) & (sessions <= pd.Timestamp(last))]
        bars = group.drop(columns=["symbol", "timestamp"]).set_index("session").reindex(wanted)
        bars["volume"] = bars["volume"].fillna(0)
        yield sids[symbol], bars


def _equities(
    symbols: list[str],
    spans: dict[str, tuple[dt.date, dt.date]],
    master: list[TickerInterval],
    exchange: str,
) -> Any:
    """One row per (asset, ticker it traded under), the sid repeated for a rename."""
    import pandas as pd

    rows = []
    for sid, symbol in enumerate(symbols):
        first, last = spans[symbol]
        intervals = [row for row in master if row.symbol == symbol]
        delisted = max((row.delisted for row in intervals if row.delisted), default=None)
        name = next((row.name for row in intervals if row.name), symbol)
        tickers = [
            (row.ticker, max(first, row.valid_from or first), min(last, row.valid_to or last))
            for row in intervals
        ] or [(symbol, first, last)]
        for ticker, begins, ends in tickers:
            if begins > ends:
                continue  # a ticker of the security outside the bundle's days
            rows.append(
                {
                    "sid": sid,
                    "symbol": ticker,
                    "asset_name": name,
                    "start_date": pd.Timestamp(begins),
                    "end_date": pd.Timestamp(ends),
                    "first_traded": pd.Timestamp(first),
                    "auto_close_date": pd.Timestamp(
                        (delisted if delisted and delisted <= last else last) + dt.timedelta(days=1)
                    ),
                    "exchange": exchange,
                }
            )
    return pd.DataFrame(rows).set_index("sid")


def _exchanges(exchange: str) -> Any:
    import pandas as pd

    return pd.DataFrame([{"exchange": exchange, "canonical_name": exchange, "country_code": "US"}])


def _adjustments(
    actions: dict[str, pa.Table], sids: dict[str, int], spans: dict[str, tuple[dt.date, dt.date]]
) -> tuple[Any, Any]:
    """zipline's splits (ratio: old shares per new, applied to prices before the ex-date)
    and cash dividends, of the bundle's days."""
    import pandas as pd

    splits, dividends = [], []
    for symbol, table in actions.items():
        first, last = spans[symbol]
        for row in table.to_pylist():
            ex_date = row["ex_date"]
            if ex_date is None or not first < ex_date <= last:
                continue  # an action outside the bars changes none of them
            if row["type"] in SPLIT_TYPES:
                splits.append(
                    {
                        "sid": sids[symbol],
                        "ratio": 1.0 / split_ratio(row),
                        "effective_date": pd.Timestamp(ex_date),
                    }
                )
            elif row["type"] in DIVIDEND_TYPES:
                dividends.append(
                    {
                        "sid": sids[symbol],
                        "amount": float(row["rate"]),
                        "ex_date": pd.Timestamp(ex_date),
                        "record_date": _timestamp(row["record_date"]),
                        "declared_date": _timestamp(row["process_date"]),
                        "pay_date": _timestamp(row["payable_date"]),
                    }
                )
    split_columns = {"sid": "int64", "ratio": "float64", "effective_date": "datetime64[ns]"}
    dividend_columns = {
        "sid": "int64",
        "amount": "float64",
        "ex_date": "datetime64[ns]",
        "record_date": "datetime64[ns]",
        "declared_date": "datetime64[ns]",
        "pay_date": "datetime64[ns]",
    }
    return (
        pd.DataFrame(splits, columns=list(split_columns)).astype(split_columns),
        pd.DataFrame(dividends, columns=list(dividend_columns)).astype(dividend_columns),
    )


def _timestamp(value: dt.date | None) -> Any:
    import pandas as pd

    return pd.NaT if value is None else pd.Timestamp(value)
