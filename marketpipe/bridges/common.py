"""What every bridge needs: the engine imported with a clear error, prices at a precision,
high and low widened to hold open and close, and an output directory published whole."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa

PRICE_COLUMNS = ("open", "high", "low", "close")
# The venue (Nautilus) or exchange (zipline) a lake's bars are given: the vendor's
# consolidated view, not one exchange's.
VENUES = {"alpaca": "ALPACA", "demo": "ALPACA", "polygon": "POLYGON"}
# Decimals a price can be quoted in: cents, or hundredths of a cent below $1 (Reg NMS).
PRICE_PRECISIONS = (2, 4)


class BridgeUnavailable(RuntimeError):
    """The engine a bridge writes for is not installed."""


def vendor_venue(vendor: str) -> str:
    """The venue name of a lake of ``vendor``'s bars (its name, upper case, if unknown)."""
    return VENUES.get(vendor, vendor.upper())


def require_engine(module: str, package: str) -> ModuleType:
    """Import ``module``, or say which package to install (the ``backtest`` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BridgeUnavailable(
            f"{package} is not installed: pip install 'marketpipe[backtest]' (or {package})"
        ) from exc


def price_precision(table: pa.Table) -> tuple[int, bool]:
    """The fewest decimals (2 or 4) that hold every price of ``table`` exactly, and whether
    its prices must be rounded to 4 to fit (adjusted prices have more decimals)."""
    for precision in PRICE_PRECISIONS:
        scale = 10.0**precision
        if all(_fits(table[name].to_numpy(), scale) for name in PRICE_COLUMNS):
            return precision, False
    return PRICE_PRECISIONS[-1], True


def _fits(values: np.ndarray, scale: float) -> bool:
    scaled = values * scale
    return bool(np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, scaled)))


def rounded_prices(table: pa.Table, precision: int) -> tuple[dict[str, np.ndarray], int]:
    """The open, high, low and close of ``table`` at ``precision`` decimals, high and low
    widened where open or close lies outside them (the lake keeps such bars as the vendor
    served them; engines refuse them), and how many bars were widened."""
    prices = {name: np.round(table[name].to_numpy(), precision) for name in PRICE_COLUMNS}
    high = np.maximum.reduce([prices["high"], prices["open"], prices["close"]])
    low = np.minimum.reduce([prices["low"], prices["open"], prices["close"]])
    widened = int(np.count_nonzero((high != prices["high"]) | (low != prices["low"])))
    prices["high"], prices["low"] = high, low
    return prices, widened


@contextmanager
def published_directory(output: Path) -> Iterator[Path]:
    """A scratch directory beside ``output`` that becomes ``output`` when the block ends
    without an error (removed otherwise): no half-written catalog is ever at ``output``.
    ``output`` must not exist, or be an empty directory."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(
            f"{output} exists and is not an empty directory; name a new one or remove it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = output.parent / f".{output.name}.{os.getpid()}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
        os.replace(scratch, output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
