"""The lake's bars as a NautilusTrader ``ParquetDataCatalog``.

- One ``Equity`` per symbol, ``SYMBOL.VENUE`` (the venue: ``venue=``, else the vendor's name:
  ``ALPACA`` or ``POLYGON``; the bars are the vendor's consolidated view, not one
  exchange's), and its bars as ``SYMBOL.VENUE-1-MINUTE-LAST-EXTERNAL``.
- ``ts_event`` is the bar's **close**: the lake stamps a bar at its open, as Alpaca and
  Polygon do, and Nautilus at its close, so every bar moves one bar width later
  (``ts_init`` = ``ts_event``). Without the shift a strategy would see a minute's bar at
  its start: a look-ahead.
- Prices at the instrument's precision: 2 decimals when every price fits, else 4 (rounded;
  adjusted prices need it). Nautilus refuses a bar whose open or close lies outside
  [low, high]; real bars have them, so high/low are widened to hold them, and counted.
  Volume is in whole shares (fractional volumes are rounded, and counted).
- ``marketpipe.json`` at the catalog's root says what was written: source, vendor, feed,
  adjustment, session, the timestamp convention, and per symbol the bars, widened bars,
  rounded volumes and precision.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from marketpipe.bridges.common import (
    price_precision,
    published_directory,
    require_engine,
    rounded_prices,
    vendor_venue,
)
from marketpipe.lake.identity import stored_identity
from marketpipe.lake.read_plan import sorted_symbols
from marketpipe.lake.reader import read_bars
from marketpipe.lake.storage import as_store
from marketpipe.markettime.timeframe import Timeframe, TimeframeUnit

METADATA_FILE = "marketpipe.json"
_NAUTILUS_UNITS = {TimeframeUnit.MINUTE: "MINUTE", TimeframeUnit.HOUR: "HOUR"}


@dataclass
class SymbolExport:
    """What one symbol's bars became."""

    instrument_id: str
    bar_type: str
    bars: int
    widened: int  # bars whose high or low was widened to hold the open and close
    volume_rounded: int  # bars whose volume was not a whole number of shares
    price_precision: int
    prices_rounded: bool  # prices had more decimals than the precision (adjusted ones)


@dataclass
class CatalogExport:
    """What :func:`write_catalog` wrote."""

    path: Path
    source: str
    vendor: str
    feed: str
    timeframe: str
    adjustment: str
    session: str
    venue: str
    start: str
    end: str
    timestamps: str = "ts_event = the bar's close (its open + one bar width); ts_init = ts_event"
    symbols: dict[str, SymbolExport] = field(default_factory=dict)

    @property
    def bars(self) -> int:
        """Bars written in all."""
        return sum(item.bars for item in self.symbols.values())

    @property
    def widened(self) -> int:
        """Bars whose high or low was widened, in all."""
        return sum(item.widened for item in self.symbols.values())


def write_catalog(
    output: Path | str,
    symbols: str | Sequence[str],
    start: dt.date | str,
    end: dt.date | str,
    *,
    data_dir: Path | str = "data",
    adjustment: str = "raw",
    session: Literal["extended", "regular"] = "extended",
    venue: str | None = None,
) -> CatalogExport:
    """Write ``symbols``' bars from ``start`` to ``end`` (New York dates) into a new
    ``ParquetDataCatalog`` at ``output`` (see the module's text), published whole.

    Missing partitions fail it, naming them (as :func:`marketpipe.read_bars`); a symbol
    with no bars in the range gets its instrument and no bars.
    """
    require_engine("nautilus_trader", "nautilus_trader")
    lake = as_store(data_dir)
    identity = stored_identity(lake)
    if identity is None:
        raise ValueError(f"{lake.uri} holds no bars yet; run the workflow first")
    timeframe = Timeframe.parse(identity.timeframe)
    if timeframe.unit not in _NAUTILUS_UNITS:
        raise ValueError(f"a {timeframe} lake has no Nautilus bar type here; use 1Min bars")
    tickers = sorted_symbols(symbols)
    export = CatalogExport(
        path=Path(output),
        source=lake.uri,
        vendor=identity.vendor,
        feed=identity.feed,
        timeframe=str(timeframe),
        adjustment=adjustment,
        session=session,
        venue=venue or vendor_venue(identity.vendor),
        start=str(start),
        end=str(end),
    )
    spec = f"{timeframe.amount}-{_NAUTILUS_UNITS[timeframe.unit]}-LAST-EXTERNAL"
    width_ns = (timeframe.seconds or 60) * 10**9
    with published_directory(Path(output)) as scratch:
        catalog = _catalog(scratch)
        for symbol in tickers:  # a symbol at a time: memory holds one symbol's range
            rows = read_bars(
                symbol, start, end, data_dir=lake, adjustment=adjustment, session=session
            )
            export.symbols[symbol] = _write_symbol(catalog, rows, symbol, export, spec, width_ns)
        (scratch / METADATA_FILE).write_text(json.dumps(_described(export), indent=2) + "\n")
    return export


def _catalog(path: Path) -> Any:
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    return ParquetDataCatalog(str(path))


def _write_symbol(
    catalog: Any, rows: pa.Table, symbol: str, export: CatalogExport, spec: str, width_ns: int
) -> SymbolExport:
    """One symbol's instrument and bars, a year per catalog file."""
    from nautilus_trader.model.data import BarType
    from nautilus_trader.persistence.wranglers import BarDataWrangler

    precision, rounded = price_precision(rows) if rows.num_rows else (2, False)
    instrument = _equity(symbol, export.venue, precision, export.adjustment)
    bar_type = BarType.from_str(f"{instrument.id}-{spec}")
    catalog.write_data([instrument])
    prices, widened = rounded_prices(rows, precision)
    volume = rows["volume"].to_numpy()
    whole = np.round(volume)
    closes = rows["timestamp"].cast(pa.int64()).to_numpy() + width_ns
    years = closes.astype("datetime64[ns]").astype("datetime64[Y]")
    wrangler = BarDataWrangler(bar_type, instrument)
    for year in np.unique(years):
        chosen = years == year
        frame = _frame(closes[chosen], {name: values[chosen] for name, values in prices.items()})
        frame["volume"] = whole[chosen]
        catalog.write_data(wrangler.process(frame))
    return SymbolExport(
        instrument_id=str(instrument.id),
        bar_type=str(bar_type),
        bars=rows.num_rows,
        widened=widened,
        volume_rounded=int(np.count_nonzero(whole != volume)),
        price_precision=precision,
        prices_rounded=rounded,
    )


def _frame(closes: np.ndarray, prices: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    index = pd.DatetimeIndex(closes.astype("datetime64[ns]"), tz="UTC")
    return pd.DataFrame(prices, index=index)


def _equity(symbol: str, venue: str, precision: int, adjustment: str) -> Any:
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.identifiers import InstrumentId, Symbol, Venue
    from nautilus_trader.model.instruments import Equity
    from nautilus_trader.model.objects import Price, Quantity

    return Equity(
        instrument_id=InstrumentId(Symbol(symbol), Venue(venue)),
        raw_symbol=Symbol(symbol),
        currency=USD,
        price_precision=precision,
        price_increment=Price(10.0**-precision, precision),
        lot_size=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
        info={"source": "marketpipe", "adjustment": adjustment},
    )


def _described(export: CatalogExport) -> dict[str, Any]:
    described = asdict(export)
    described["path"] = str(export.path)
    described["bars"] = export.bars
    described["widened"] = export.widened
    return described
