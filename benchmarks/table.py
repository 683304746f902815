"""The docs' benchmark table (docs/benchmarks.md), rendered from ``benchmarks/measured.json`` (what
``run_all.py`` measured, with the commit it measured): every number in the table can be
traced to one run.

    python benchmarks/table.py        # rewrite docs/benchmarks.md's table from measured.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from table_rows import Results, Row, ms
from table_scale import SCALE_ROWS
from table_ticks import TICKS_ROWS

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured.json"
PAGE = HERE.parent / "docs" / "benchmarks.md"
START, END = "<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->"


def _throughput(r: Results) -> str:
    t = r["throughput"]
    rate = t["rows_per_second"]
    return (
        f"MarketPipe **{rate['marketpipe'] / 1000:,.0f}k rows/s** vs alpaca-py "
        f"{rate['alpaca-py'] / 1000:,.0f}k: **{t['speedup']:.2f}x** "
        f"({t['rows']['marketpipe']:,} rows a side, median of {len(t['seconds']['marketpipe'])})"
    )


def _memory(r: Results) -> str:
    fetch, flow = r["fetch_memory"], r["workflow_memory"]["summary"]
    months = sorted(fetch["summary"], key=int)
    parts = [
        f"client: {fetch['summary'][months[0]]['median_peak_rss_mb']:.0f} vs "
        f"{fetch['summary'][months[-1]]['median_peak_rss_mb']:.0f} MB, "
        f"**{fetch['rss_ratio']:.2f}**"
    ]
    parts += [
        f"workflow `--cores {cores}`: {flow[cores]['short_mb']:.0f} vs "
        f"{flow[cores]['long_mb']:.0f} MB, **{flow[cores]['ratio']:.2f}**"
        for cores in sorted(flow)
    ]
    return "; ".join(parts)


def _memory_met(r: Results) -> bool:
    ratios = [r["fetch_memory"]["rss_ratio"]]
    ratios += [entry["ratio"] for entry in r["workflow_memory"]["summary"].values()]
    return all(ratio <= 1.2 for ratio in ratios)


def _reading(r: Results, key: str) -> float:
    return float(r["reading"][key])


def _full_scan(r: Results) -> str:
    read = r["reading"]
    engines = [
        (
            name,
            read.get(f"full_scan_vs_one_file_{name}"),
            read.get(f"discovery_vs_full_scan_{name}"),
        )
        for name in ("arrow", "polars", "duckdb")
    ]
    return (
        "; ".join(
            f"{name}: **{vs_one:.2f}x** one file per symbol, discovery "
            f"**{vs_discovery:.1f}x** slower (one file per symbol: "
            f"{read[f'discovery_vs_one_file_{name}']:.0f}x)"
            for name, vs_one, vs_discovery in engines
            if vs_one is not None
        )
        + f" ({read['rows_full']:,} rows; `scan_bars` to Arrow "
        f"{ms(read['scan_bars_full_arrow_s'])})"
    )


def _full_scan_met(r: Results) -> bool:
    read = r["reading"]
    names = [n for n in ("arrow", "polars", "duckdb") if f"full_scan_vs_one_file_{n}" in read]
    return all(
        read[f"full_scan_vs_one_file_{n}"] <= 3 and read[f"discovery_vs_full_scan_{n}"] >= 20
        for n in names
    )


ROWS = [
    Row(
        "API requests for 20 symbols x 3 months / `ceil(total_bars / 10000)` (`requests_floor.py`)",
        "<= 1.10",
        lambda r: (
            f"{r['requests_floor']['requests']} / {r['requests_floor']['floor']} = "
            f"**{r['requests_floor']['ratio']:.2f}**"
        ),
        lambda r: r["requests_floor"]["ratio"] <= 1.10,
    ),
    Row(
        "rows/s end to end, `snakemake --cores 2`, lake written, 20 symbols x 3 months, bars "
        "only, against alpaca-py's per-symbol-day loop on one warmed-up simulator process, "
        "alternating (`throughput.py`); each side's rows/s from the rows it wrote",
        ">= 250k rows/s, >= 3x alpaca-py",
        _throughput,
        lambda r: (
            r["throughput"]["rows_per_second"]["marketpipe"] >= 250_000
            and r["throughput"]["speedup"] >= 3
        ),
    ),
    Row(
        "peak RSS, one symbol, 1 vs 12 months: the client's `fetch_batch()` "
        "(`fetch_memory.py`); the workflow process (`workflow_memory.py`)",
        "ratio <= 1.2",
        _memory,
        _memory_met,
    ),
    Row(
        "`snakemake -n`, 100 symbols x 5 years (125,800 partitions), nothing on disk "
        "(`planning.py`)",
        "<= 30 s",
        lambda r: f"**{r['planning']['snakemake_n_empty_s']:.1f} s**",
        lambda r: r["planning"]["snakemake_n_empty_s"] <= 30,
    ),
    Row(
        "`snakemake -n`, same plan, every day file present (no month files yet: the plan is "
        "their consolidation jobs)",
        "<= 5 s",
        lambda r: f"**{r['planning']['snakemake_n_full_s']:.1f} s**",
        lambda r: r["planning"]["snakemake_n_full_s"] <= 5,
    ),
    Row(
        "daily update, 100 symbols, one new trading day (`incremental.py`)",
        "bar requests <= 1.1 x the floor `ceil(bars / 10000)`, <= 15 s overhead",
        lambda r: (
            f"**{r['incremental']['packed']['requests']} bar requests** (floor "
            f"{r['incremental']['packed']['floor']}), "
            f"{r['incremental']['packed'].get('corporate_actions_requests', 0)} corporate-actions "
            f"and {r['incremental']['packed'].get('news_requests', 0)} news requests besides; "
            f"{r['incremental']['packed']['seconds']:.1f} s in all; `symbols_per_job: 1`: "
            f"{r['incremental']['one_per_symbol']['requests']} bar requests, "
            f"{r['incremental']['one_per_symbol']['seconds']:.1f} s"
        ),
        lambda r: (
            r["incremental"]["packed"]["overhead_seconds"] <= 15
            and r["incremental"]["packed"]["requests"] <= 1.1 * r["incremental"]["packed"]["floor"]
        ),
    ),
    Row(
        "`marketpipe plan` for the planning lake (empty / full)",
        "<= 5 s",
        lambda r: (
            f"**{r['planning']['plan_empty_s']:.1f} s / {r['planning']['plan_full_s']:.1f} s**"
        ),
        lambda r: max(r["planning"]["plan_empty_s"], r["planning"]["plan_full_s"]) <= 5,
    ),
    Row(
        "`read_bars`, 1 symbol x 1 year vs the same rows in one Parquet file, on the "
        "100-symbol x 5-year lake of real-sized day files, consolidated (`reading.py`)",
        "<= 1.5x",
        lambda r: (
            f"{ms(_reading(r, 'read_bars_year_s'))} vs "
            f"{ms(_reading(r, 'one_file_year_s'))}, "
            f"**{_reading(r, 'read_bars_vs_one_file'):.2f}x** "
            f"(day files alone: {ms(_reading(r, 'read_bars_year_day_files_s'))}, "
            f"{_reading(r, 'day_files_vs_one_file'):.1f}x)"
        ),
        lambda r: _reading(r, "read_bars_vs_one_file") <= 1.5,
    ),
    Row(
        "`read_bars` vs pyarrow.dataset discovery + filter: 1 symbol x 1 month / 1 year "
        "(polars and DuckDB globs alongside)",
        ">= 20x faster; the month < 50 ms",
        lambda r: (
            f"month **{ms(_reading(r, 'read_bars_month_s'))}** vs "
            f"{ms(_reading(r, 'pyarrow_discovery_month_s'))} "
            f"(**{_reading(r, 'discovery_vs_read_bars_month'):.0f}x**); year "
            f"{ms(_reading(r, 'read_bars_year_s'))} vs "
            f"{ms(_reading(r, 'pyarrow_discovery_year_s'))}"
            f" (**{_reading(r, 'discovery_vs_read_bars_year'):.0f}x**); polars "
            f"{ms(_reading(r, 'polars_year_s'))}, DuckDB {ms(_reading(r, 'duckdb_year_s'))}"
        ),
        lambda r: (
            _reading(r, "read_bars_month_s") < 0.05
            and _reading(r, "discovery_vs_read_bars_month") >= 20
            and _reading(r, "discovery_vs_read_bars_year") >= 20
        ),
    ),
    Row(
        "full scan of that lake: `scan_bars` to Arrow (close, volume), and a polars / DuckDB "
        "aggregate over `bar_files`, vs the same rows in one file per symbol and vs each "
        "engine's own discovery over the day files",
        "<= 3x one file per symbol; >= 20x faster than discovery",
        _full_scan,
        _full_scan_met,
    ),
    Row(
        "`consolidate` of that lake (every month file built from its day files)",
        "reported",
        lambda r: (
            f"**{r['reading']['consolidate_s']:.0f} s** for "
            f"{r['reading']['month_files']:,} month files from {r['reading']['partitions']:,} day "
            "files"
        ),
        lambda r: None,
    ),
    Row(
        "`snakemake -n` / `marketpipe plan` on an S3 lake of 100 symbols x 5 years (moto's "
        "server on loopback; `s3_planning.py`)",
        "~1 LIST per 1,000 keys",
        lambda r: (
            f"**{r['s3_planning']['snakemake -n']['requests']} / "
            f"{r['s3_planning']['marketpipe plan']['requests']} requests** (floor "
            f"{r['s3_planning']['list_floor']}, plus one listing each of news and month files "
            "and one GET of the lake's identity); "
            f"{r['s3_planning']['snakemake -n']['seconds']:.0f} s / "
            f"{r['s3_planning']['marketpipe plan']['seconds']:.0f} s"
        ),
        lambda r: (
            r["s3_planning"]["snakemake -n"]["requests"] <= r["s3_planning"]["list_floor"] + 3
        ),
    ),
    Row(
        "API requests for a Polygon backfill, 20 symbols x 3 months, against the fewest the API "
        "allows: one ticker a request, 50,000 bars a page (`requests_floor.py --vendor polygon`)",
        "<= 1.10",
        lambda r: (
            f"{r['requests_floor_polygon']['requests']} / "
            f"{r['requests_floor_polygon']['floor']} = "
            f"**{r['requests_floor_polygon']['ratio']:.2f}**"
        ),
        lambda r: r["requests_floor_polygon"]["ratio"] <= 1.10,
    ),
    Row(
        "`marketpipe.reconcile_lakes` of two 20-symbol x 3-month lakes, three bars changed "
        "(`reconcile.py`)",
        "<= 10 s",
        lambda r: (
            f"**{r['reconcile']['seconds']:.1f} s** for {r['reconcile']['rows_a_side']:,} "
            "rows a side"
        ),
        lambda r: r["reconcile"]["seconds"] <= 10,
    ),
    *SCALE_ROWS,
    *TICKS_ROWS,
]


def render(measured: dict[str, Any]) -> str:
    """The table and the line saying which run it comes from."""
    results = measured["results"]
    lines = [
        "| # | measurement (simulator, 1-minute sip bars) | target | measured here | |",
        "|---|---|---|---|---|",
    ]
    for number, row in enumerate(ROWS, start=1):
        met = row.met(results)
        verdict = "reported" if met is None else ("met" if met else "missed")
        lines.append(
            f"| {number} | {row.what} | {row.target} | {row.measured(results)} | {verdict} |"
        )
    lines.append("")
    provenance = (
        f"Every number above is from one `run_all.py` run on commit `{measured['commit'][:12]}`"
        f"{' (with uncommitted changes)' if measured['dirty'] else ''}, "
        f"{measured['measured_at']}, on {measured['machine']}: `benchmarks/measured.json`"
    )
    reruns = measured.get("reruns", {})
    if reruns:
        provenance += "; measured again since (`run_all.py --only`): " + ", ".join(
            f"`{name}` on commit `{source['commit'][:12]}`"
            f"{' (with uncommitted changes)' if source['dirty'] else ''}, {source['measured_at']}"
            for name, source in sorted(reruns.items())
        )
    lines.append(provenance + ".")
    return "\n".join(lines)


def rewrite_page(measured: dict[str, Any], page: Path = PAGE) -> None:
    """Replace the benchmarks page's table (between its markers) with :func:`render`'s."""
    text = page.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    page.write_text(f"{before}{START}\n{render(measured)}\n{END}{after}")


def page_table(page: Path = PAGE) -> str:
    """The table as it stands on the benchmarks page (between its markers)."""
    return page.read_text().split(START, 1)[1].split(END, 1)[0].strip()


if __name__ == "__main__":
    rewrite_page(json.loads(MEASURED.read_text()))
    sys.exit(0)
