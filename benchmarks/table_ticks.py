"""The row of docs/benchmarks.md's table for tick data (issue #36): a day of a liquid
symbol's quotes into the lake at flat memory, with alpaca-py beside it."""

from __future__ import annotations

from table_rows import Results, Row


def _quotes(r: Results) -> str:
    ours, theirs = r["ticks_memory"]["marketpipe"], r["ticks_memory"]["alpaca-py"]
    return (
        f"**{ours['peak_rss_mb']:.0f} MB** peak, {ours['rows']:,} quotes in "
        f"{ours['seconds']:.0f} s ({ours['rows_per_second']:,}/s); alpaca-py's "
        f"`get_stock_quotes`: {theirs['peak_rss_mb']:,.0f} MB, {theirs['seconds']:.0f} s"
    )


TICKS_ROWS = [
    Row(
        "one day of a liquid symbol's quotes into the lake (`ticks_memory.py`)",
        "peak RSS <= 400 MB",
        _quotes,
        lambda r: r["ticks_memory"]["marketpipe"]["peak_rss_mb"] <= 400,
    ),
]
