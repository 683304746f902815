"""``marketpipe plot SYMBOL``: a price and volume chart from the lake, to look at the data.

Short ranges are drawn as candles of the regular session (5-minute candles for a day,
30-minute ones up to two weeks, daily ones up to half a year); longer ones as the daily
close. The chart is a PNG, or an HTML page holding it (``--output chart.html``), made
offline.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.reader import read_bars
from marketpipe.markettime.calendar import NEW_YORK, trading_sessions
from marketpipe.workflow.settings import WorkflowSettings

CHART_SUFFIXES = (".png", ".html")
# Up to this many sessions, candles of this width (longer ranges: the daily close as a line).
_CANDLES = ((1, "5Min"), (10, "30Min"), (130, "1Day"))


def add_plot_options(command: argparse.ArgumentParser) -> None:
    """``SYMBOL --start --end --output``."""
    command.add_argument("symbol", help="the symbol to draw (as in the lake)")
    command.add_argument(
        "--start", type=dt.date.fromisoformat, required=True, help="first New York date"
    )
    command.add_argument(
        "--end", type=dt.date.fromisoformat, help="last New York date (default: --start)"
    )
    command.add_argument(
        "--output", type=Path, help="chart.png or chart.html (default: SYMBOL-START-END.png)"
    )


def chart_path(symbol: str, first: dt.date, last: dt.date, output: Path | None) -> Path:
    """Where the chart goes; ValueError for a name that is neither .png nor .html."""
    path = output if output is not None else Path(f"{symbol}-{first}-{last}.png")
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise ValueError(f"--output {path}: the file name must end in .png or .html")
    return path


def plot_bars(
    settings: WorkflowSettings, symbol: str, first: dt.date, last: dt.date, output: Path
) -> tuple[int, str]:
    """Draw ``symbol``'s bars from ``first`` to ``last`` into ``output``; (bars drawn, what
    they are: ``30Min candles``, ``daily closes``)."""
    sessions = len(trading_sessions(first, last))
    width = next((width for most, width in _CANDLES if sessions <= most), None)
    table = read_bars(
        symbol,
        first,
        last,
        data_dir=settings.lake,
        session="regular",
        timeframe=width or "1Day",
        missing="skip",
    )
    if table.num_rows == 0:
        raise ValueError(f"the lake holds no bars of {symbol} between {first} and {last}")
    kind = f"{width} candles" if width else "daily closes"
    png = _draw(table, f"{symbol} {first}..{last}, regular session, {kind}", candles=bool(width))
    if output.suffix.lower() == ".html":
        write_atomically(output, _page(png, f"{symbol} {first}..{last}").encode())
    else:
        write_atomically(output, png)
    return table.num_rows, kind


def _draw(table: pa.Table, title: str, candles: bool) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [stamp.astimezone(NEW_YORK) for stamp in table.column("timestamp").to_pylist()]
    columns = {name: table.column(name).to_pylist() for name in ("open", "high", "low", "close")}
    volume = table.column("volume").to_pylist()
    figure, (prices, volumes) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    positions = list(range(len(times)))  # one slot per bar: nights and weekends take no room
    if candles:
        rising = [c >= o for o, c in zip(columns["open"], columns["close"], strict=True)]
        colours = ["#2a9d8f" if up else "#e76f51" for up in rising]
        prices.vlines(positions, columns["low"], columns["high"], colors=colours, linewidth=1)
        bottoms = [min(o, c) for o, c in zip(columns["open"], columns["close"], strict=True)]
        spans = pc.abs(pc.subtract(table.column("close"), table.column("open"))).to_pylist()
        heights = [max(span, 1e-9) for span in spans]
        prices.bar(positions, heights, bottom=bottoms, color=colours, width=0.7)
        volumes.bar(positions, volume, color=colours, width=0.7)
    else:
        prices.plot(positions, columns["close"], color="#264653", linewidth=1.2)
        volumes.bar(positions, volume, color="#8ab17d", width=1.0)
    prices.set_title(title)
    prices.set_ylabel("price")
    volumes.set_ylabel("volume")
    ticks = positions[:: max(1, len(positions) // 8)]
    fmt = "%Y-%m-%d" if not candles or times[-1].date() != times[0].date() else "%H:%M"
    volumes.set_xticks(ticks, [times[i].strftime(fmt) for i in ticks], rotation=20)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _page(png: bytes, title: str) -> str:
    image = base64.b64encode(png).decode()
    name = html.escape(title)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{name}</title></head>\n"
        f"<body><h1>{name}</h1>\n<img alt='{name}' src='data:image/png;base64,{image}'>\n"
        "</body></html>\n"
    )
