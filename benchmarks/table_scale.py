"""The rows of docs/benchmarks.md's table for an index-sized universe (issue #34): planning
and nothing-due checks at 100, 250 and 500 symbols, the daily update of 500 symbols, bulk
backfill from flat files, the floor client and a far API, cross-sections and lake size."""

from __future__ import annotations

from typing import Any

from table_rows import Results, Row, ms

SIZES = ("100", "250", "500")


def _growth(part: dict[str, Any], command: str, partitions_per_symbol: float) -> str:
    """Seconds at each size and the cost per thousand partitions at each."""
    steps = []
    for size in SIZES:
        if size in part:
            seconds = part[size][command]["seconds"]
            per_k = seconds / (int(size) * partitions_per_symbol / 1000)
            steps.append(f"{size}: {seconds:.1f} s ({per_k * 1000:.0f} ms/1k)")
    return ", ".join(steps)


def _largest(part: dict[str, Any]) -> dict[str, Any]:
    return part[max((key for key in part if key.isdigit()), key=int)]


def _cold(r: Results) -> str:
    scale = r["scale"]
    cold = scale["cold_plan"]
    top = _largest(cold)
    per_symbol = 252 * scale["years"]
    return (
        f"**{top['snakemake_n']['seconds']:.1f} s / {top['marketpipe_plan']['seconds']:.1f} s**, "
        f"peak RSS {top['snakemake_n']['peak_rss_mb']:,.0f} / "
        f"{top['marketpipe_plan']['peak_rss_mb']:,.0f} MB; `snakemake -n` by size: "
        f"{_growth(cold, 'snakemake_n', per_symbol)}"
    )


def _cold_met(r: Results) -> bool:
    top = _largest(r["scale"]["cold_plan"])
    return (
        top["snakemake_n"]["seconds"] <= 60
        and top["marketpipe_plan"]["seconds"] <= 10
        and max(top["snakemake_n"]["peak_rss_mb"], top["marketpipe_plan"]["peak_rss_mb"]) <= 2048
    )


def _due(r: Results) -> str:
    due = r["scale"]["nothing_due"]
    top = _largest(due)
    per_symbol = due["partitions"] / max(int(key) for key in due if key.isdigit())
    return (
        f"**{top['snakemake_n']['seconds']:.1f} s / {top['marketpipe_update']['seconds']:.1f} s** "
        f"({due['partitions']:,} partitions); `snakemake -n` by size: "
        f"{_growth(due, 'snakemake_n', per_symbol)}; `update`: "
        f"{_growth(due, 'marketpipe_update', per_symbol)}"
    )


def _due_met(r: Results) -> bool:
    top = _largest(r["scale"]["nothing_due"])
    return max(top["snakemake_n"]["seconds"], top["marketpipe_update"]["seconds"]) <= 15


def _daily(r: Results) -> str:
    packed = r["incremental_500"]["packed"]
    return (
        f"**{packed['seconds']:.1f} s**, **{packed['requests']} bar requests** (floor "
        f"{packed['floor']}: {packed['requests'] / packed['floor']:.2f}x), "
        f"{packed.get('corporate_actions_requests', 0)} corporate-actions and "
        f"{packed.get('news_requests', 0)} news requests besides"
    )


def _daily_met(r: Results) -> bool:
    packed = r["incremental_500"]["packed"]
    return packed["seconds"] <= 60 and packed["requests"] <= 1.1 * packed["floor"]


def _flat(r: Results) -> str:
    flat, rest = r["flat_files"]["flat_files"], r["flat_files"]["rest"]
    return (
        f"flat files **{flat['seconds']:.0f} s** ({flat['file_reads']} file reads, "
        f"{flat['bar_requests']} aggregates requests, {flat['rows_per_second'] / 1000:,.0f}k "
        f"rows/s) vs REST {rest['seconds']:.0f} s ({rest['bar_requests']} aggregates "
        f"requests, {rest['rows_per_second'] / 1000:,.0f}k rows/s): "
        f"**{r['flat_files']['speedup']:.2f}x**; {flat['rows']:,} rows; the lakes "
        f"{'agree' if r['flat_files']['lakes_agree'] else 'DIFFER'}"
    )


def _floor(r: Results) -> str:
    t = r["throughput"]
    return (
        f"MarketPipe {t['seconds']['marketpipe'][0]:.1f} s vs the floor "
        f"{t['seconds']['floor'][0]:.1f} s (medians: **{t['over_floor']:.2f}x** its time; "
        f"{t['requests']['marketpipe']} requests each)"
    )


def _far(r: Results) -> str:
    t = r["throughput_latency_50ms"]
    return (
        f"**{t['speedup']:.2f}x** alpaca-py's speed: MarketPipe "
        f"{min(t['seconds']['marketpipe']):.1f} s ({t['requests']['marketpipe']} requests), "
        f"alpaca-py {min(t['seconds']['alpaca-py']):.1f} s ({t['requests']['alpaca-py']} "
        f"requests), the floor {min(t['seconds']['floor']):.1f} s (best runs)"
    )


def _cross(r: Results) -> str:
    cross = r["scale"]["cross_section"]
    day, month = cross["month_file_reads"]["day"], cross["month_file_reads"]["month"]
    days_only = cross["day_file_reads"]
    return (
        f"one day **{ms(day['seconds'])}**, one month **{ms(month['seconds'])}** "
        f"({month['rows']:,} rows; from day files alone: {ms(days_only['day']['seconds'])} / "
        f"{ms(days_only['month']['seconds'])})"
    )


def _cross_met(r: Results) -> bool:
    reads = r["scale"]["cross_section"]["month_file_reads"]
    return reads["day"]["seconds"] <= 1 and reads["month"]["seconds"] <= 5


def _size(r: Results) -> str:
    cross = r["scale"]["cross_section"]
    day, month = cross["day_files"]["bytes_per_bar"], cross["month_files"]["bytes_per_bar"]
    return f"day files **{day:.1f}** bytes/bar, month files **{month:.1f}** ({month / day:.2f}x)"


SCALE_ROWS = [
    Row(
        "cold plan, 500 symbols x 10 years (1.26M partitions), nothing on disk: `snakemake -n` "
        "/ `marketpipe plan`, and `snakemake -n` at 100 / 250 / 500 symbols (`scale.py`)",
        "<= 60 s / <= 10 s, peak RSS <= 2 GB, no step worse than linear",
        _cold,
        _cold_met,
    ),
    Row(
        "nothing due on a full 500-symbol x 2-year lake: `snakemake -n` / `marketpipe update`, "
        "at 100 / 250 / 500 symbols (no month files, news or corporate actions asked for)",
        "<= 15 s each",
        _due,
        _due_met,
    ),
    Row(
        "daily update, 500 symbols, one new session, against the simulator "
        "(`incremental.py --symbols 500`)",
        "<= 60 s, bar requests <= 1.1 x the floor",
        _daily,
        _daily_met,
    ),
    Row(
        "bulk backfill, 500 symbols x 21 sessions, Polygon flat files (moto's S3 on loopback, "
        "the files twice the universe) vs REST, whole workflow (`flat_files.py`)",
        "reported",
        _flat,
        lambda r: None,
    ),
    Row(
        "MarketPipe's backfill (row 2) vs a floor client sending exactly its requests and only "
        "decompressing and parsing each page, same server, same run",
        "<= 1.25x its time",
        _floor,
        lambda r: r["throughput"]["over_floor"] <= 1.25,
    ),
    Row(
        "row 2 with the server holding every answer 50 ms (a far API): MarketPipe vs alpaca-py's "
        "per-symbol-day loop (`throughput.py --latency-ms 50`)",
        ">= 6x",
        _far,
        lambda r: r["throughput_latency_50ms"]["speedup"] >= 6,
    ),
    Row(
        "cross-section, `read_bars` of 500 symbols x 1 day / x 1 month (real-sized files, "
        "consolidated)",
        "<= 1 s / <= 5 s",
        _cross,
        _cross_met,
    ),
    Row(
        "lake size: bytes per bar of day files and of month files (that lake)",
        "month files <= 2x day files",
        _size,
        lambda r: (
            r["scale"]["cross_section"]["month_files"]["bytes_per_bar"]
            <= 2 * r["scale"]["cross_section"]["day_files"]["bytes_per_bar"]
        ),
    ),
]
