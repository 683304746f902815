"""MarketPipe: reliable, resumable one-minute market data in a local Parquet lake."""

from __future__ import annotations

from typing import Any

from marketpipe.foundation.version import VERSION

__version__ = VERSION
__all__ = ["read_bars", "scan_bars"]


def __getattr__(name: str) -> Any:
    """``marketpipe.read_bars`` and ``marketpipe.scan_bars``, imported on first use (they pull
    in pyarrow, which light modules such as ``marketpipe.markettime.clock`` do not need)."""
    if name in __all__:
        from marketpipe.lake import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'marketpipe' has no attribute {name!r}")
