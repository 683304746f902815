"""The coverage report: a picture (PNG) and a self-contained HTML page, for runs and ``report``."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from marketpipe.foundation.files import write_atomically
from marketpipe.lake.ledger import CheckpointStore
from marketpipe.lake.storage import present_partitions
from marketpipe.observability.summary import build_run_summary, latest_run_summary
from marketpipe.workflow.settings import WorkflowSettings
from marketpipe.workflow.status import (
    SymbolStatus,
    lake_status,
    news_summary,
    planned_coverage,
    require_lake,
)

REPORT_DIR = "_reports"
MISSING, KNOWN_EMPTY = -1, -2


@dataclass(frozen=True)
class CoverageGrid:
    """Bars per (symbol, day); ``MISSING`` and ``KNOWN_EMPTY`` mark the gaps."""

    symbols: list[str]
    days: list[dt.date]
    values: np.ndarray


def coverage_grid(settings: WorkflowSettings) -> CoverageGrid:
    """The lake's coverage of the configured symbols and trading days."""
    coverage = planned_coverage(settings)
    days = coverage.days
    values = np.full((len(coverage.symbols), len(days)), MISSING, dtype=np.int64)
    listed = present_partitions(settings.lake, coverage.symbols)
    with CheckpointStore(settings.state_dir) as store:
        for row, symbol in enumerate(coverage.symbols):
            ledger = store.ledger(symbol, days)
            expected = coverage.expected(symbol)
            for column, day in enumerate(days):
                if not expected.covers(day):  # not listed (or not a member): no bars due
                    values[row, column] = KNOWN_EMPTY
                    continue
                entry = ledger.get(day)
                if entry is None or (symbol, day) not in listed:
                    continue
                values[row, column] = KNOWN_EMPTY if entry.known_empty else entry.rows
    return CoverageGrid(coverage.symbols, days, values)


def render_png(grid: CoverageGrid) -> bytes:
    """A heat map: symbols x trading days, coloured by bar count, gaps red, empty grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, columns = grid.values.shape
    width = min(18.0, max(7.0, 0.12 * columns + 3))
    height = min(30.0, max(2.6, 0.32 * rows + 1.8))
    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    counts = np.ma.masked_less(grid.values.astype(float), 0)
    image = axes.imshow(
        counts,
        aspect="auto",
        cmap="viridis",
        interpolation="nearest",
        vmin=0,
        vmax=max(1.0, float(counts.max() or 1)),
    )
    gaps = np.ma.masked_where(grid.values >= 0, grid.values)
    axes.imshow(
        gaps,
        aspect="auto",
        interpolation="nearest",
        vmin=KNOWN_EMPTY,
        vmax=MISSING,
        cmap=ListedColormap(["#c8c8c8", "#d62728"]),
    )
    axes.set_yticks(range(rows), grid.symbols)
    starts = [i for i, day in enumerate(grid.days) if i == 0 or day.month != grid.days[i - 1].month]
    # About one label per inch of width: every month for a quarter, every few for years.
    step = max(1, -(-len(starts) // max(1, int(width) - 2)))
    labelled = starts[::step]
    axes.set_xticks(labelled, [grid.days[i].strftime("%Y-%m") for i in labelled], rotation=0)
    axes.set_xlabel("trading day (New York)")
    axes.set_title(f"Bars per symbol and trading day, {grid.days[0]} to {grid.days[-1]}")
    figure.colorbar(image, ax=axes, label="bars", fraction=0.025, pad=0.01)
    handles = [Patch(color="#d62728", label="missing"), Patch(color="#c8c8c8", label="known empty")]
    axes.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0, -0.12 if rows > 3 else -0.3),
        ncol=2,
        frameon=False,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _status_rows(statuses: list[SymbolStatus]) -> str:
    cells = []
    for s in statuses:
        last = s.last_bar_new_york
        cells.append(
            f"<tr><td>{html.escape(s.symbol)}</td><td>{s.present}/{s.planned}</td>"
            f"<td>{s.known_empty}</td><td class='{'bad' if s.missing else ''}'>{s.missing}</td>"
            f"<td>{s.rows:,}</td><td>{s.quarantined_rows:,}</td><td>{s.flagged_rows:,}</td>"
            f"<td>{s.refreshed}</td><td>{html.escape(last)}</td></tr>"
        )
    return "\n".join(cells)


def _summary_html(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "<p>No run has finished yet.</p>"
    parts, jobs = summary["partitions"], summary["jobs"]
    endpoint_rows = "\n".join(
        f"<tr><td>{html.escape(key)}</td><td>{s['requests']}</td><td>{s['rows']:,}</td>"
        f"<td>{s['retries_total']}</td><td>{s['errors_total']}</td>"
        f"<td>{s['latency_ms']['p50']}</td><td>{s['latency_ms']['p95']}</td>"
        f"<td>{s['latency_ms']['max']}</td></tr>"
        for key, s in summary["endpoints"].items()
    )
    failures = "".join(
        f"<li>{html.escape(f['job'])}: {html.escape(str(f['error']))}</li>"
        for f in jobs["failures"]
    )
    return (
        f"<p>Run <code>{html.escape(summary['run_id'])}</code>: "
        f"<strong>{html.escape(summary['status'])}</strong>, {jobs['succeeded']} job(s) ok, "
        f"{jobs['failed']} failed; {parts['published']} partition(s) published "
        f"({parts['rows']:,} rows, {parts['rejected_rows']:,} quarantined, "
        f"{parts.get('flagged_rows', 0):,} flagged); "
        f"{summary['requests']} request(s); retries "
        f"{html.escape(json.dumps(summary['retries']))}.</p>"
        + (f"<ul class='bad'>{failures}</ul>" if failures else "")
        + "<table><tr><th>endpoint</th><th>requests</th><th>rows</th><th>retries</th>"
        "<th>errors</th><th>p50 ms</th><th>p95 ms</th><th>max ms</th></tr>"
        f"{endpoint_rows}</table>"
    )


REPORT_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.bad { color: #b00; font-weight: bold; } img { max-width: 100%; border: 1px solid #ddd; }
"""


def render_html(
    settings: WorkflowSettings,
    png: bytes,
    statuses: list[SymbolStatus],
    summary: dict[str, Any] | None,
) -> str:
    """A single HTML file (image inlined) with the picture, per-symbol status and the run."""
    config = settings.config
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MarketPipe coverage</title>
<style>{REPORT_STYLE}</style></head><body>
<h1>MarketPipe coverage</h1>
<p>{len(config.symbols)} symbol(s), {config.start} to {settings.end}, {config.timeframe}
{html.escape(settings.feed)} bars from {html.escape(config.vendor)},
lake <code>{html.escape(settings.lake.uri)}</code>.</p>
<img alt="coverage heat map" src="data:image/png;base64,{image}">
<p>{html.escape(news_summary(settings))}.</p>
<h2>Per symbol</h2>
<table><tr><th>symbol</th><th>days present</th><th>known empty</th><th>missing</th>
<th>bars</th><th>quarantined rows</th><th>flagged rows</th><th>refreshed days</th>
<th>last bar (New York)</th></tr>
{_status_rows(statuses)}
</table>
<h2>Latest run</h2>
{_summary_html(summary)}
</body></html>
"""


def make_report(
    settings: WorkflowSettings, output_dir: Path | None = None, run_id: str | None = None
) -> tuple[Path, Path]:
    """Write ``coverage.png`` and ``coverage.html``; return their paths."""
    require_lake(settings)
    output_dir = Path(output_dir or settings.state_dir / REPORT_DIR)
    output_dir.mkdir(parents=True, exist_ok=True)
    png = render_png(coverage_grid(settings))
    statuses = lake_status(settings)
    summary = latest_run_summary(settings.state_dir)
    if run_id is not None:
        with CheckpointStore(settings.state_dir) as store:
            if store.job_records(run_id):
                present = sum(status.present for status in statuses)
                summary = build_run_summary(
                    store.job_records(run_id),
                    run_id,
                    "running",
                    settings.planned_partitions,
                    present,
                )
    png_path, html_path = output_dir / "coverage.png", output_dir / "coverage.html"
    write_atomically(png_path, png)
    write_atomically(html_path, render_html(settings, png, statuses, summary).encode())
    return png_path, html_path
