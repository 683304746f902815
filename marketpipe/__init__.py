"""MarketPipe: reliable, resumable one-minute market data in a local Parquet lake."""

from __future__ import annotations

import importlib
from typing import Any

from marketpipe.foundation.version import VERSION

__version__ = VERSION
__all__ = [
    "DamagedFileError",
    "MissingNewsError",
    "MissingPartitionsError",
    "NoLakeError",
    "NoSecurityMasterError",
    "NoUniverseError",
    "bar_files",
    "members",
    "news_events",
    "read_bars",
    "read_news",
    "read_quotes",
    "read_trades",
    "reconcile",
    "reconcile_lakes",
    "scan_bars",
    "scan_ticks",
    "securities",
]
_HOMES = {
    "DamagedFileError": "marketpipe.lake.storage",
    "MissingNewsError": "marketpipe.lake.news",
    "MissingPartitionsError": "marketpipe.lake.read_plan",
    "NoLakeError": "marketpipe.lake.read_plan",
    "NoSecurityMasterError": "marketpipe.lake.securities",
    "securities": "marketpipe.lake.securities",
    "NoUniverseError": "marketpipe.lake.universe",
    "members": "marketpipe.lake.universe",
    "bar_files": "marketpipe.lake.reader",
    "read_bars": "marketpipe.lake.reader",
    "scan_bars": "marketpipe.lake.reader",
    "reconcile": "marketpipe.lake.compare",
    "reconcile_lakes": "marketpipe.lake.compare",
    "read_news": "marketpipe.lake.news",
    "news_events": "marketpipe.lake.events",
    "read_trades": "marketpipe.lake.ticks",
    "read_quotes": "marketpipe.lake.ticks",
    "scan_ticks": "marketpipe.lake.ticks",
}


def __getattr__(name: str) -> Any:
    """``marketpipe.read_bars``, ``scan_bars``, ``bar_files``, ``read_trades``,
    ``read_quotes``, ``scan_ticks``, ``read_news``, ``news_events``,
    ``securities``, ``members``, ``reconcile``, ``reconcile_lakes`` and the readers'
    errors, imported on first use (they pull in pyarrow, which light modules such as
    ``marketpipe.markettime.clock`` do not need)."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'marketpipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, though most are imported on first use."""
    return sorted({*__all__, "__version__"})
