# The consolidated read layer: once every session of a symbol-month is in the lake, one
# file of its rows, <data_dir>/ohlcv_monthly/symbol=S/year=YYYY/month=MM/bars.parquet, which
# read_bars, scan_bars and export use (see marketpipe.lake.consolidated). One job per month
# whose month files are due, after that month's fetch jobs; the day files stay the targets.

from marketpipe.workflow.consolidation import consolidate_month


def consolidation_inputs(job):
    """One output of each fetch job writing into the month: the month files wait for them."""
    return [
        fetch_outputs(fetch)[0] if FETCH_MARKERS else fetch.outputs(SETTINGS.lake.root)[0]
        for fetch in FETCH_JOBS
        if (fetch.month.year, fetch.month.month) == job.month
        and set(fetch.symbols) & set(job.symbols)
    ]


for job in CONSOLIDATIONS:

    rule:
        name:
            job.name
        input:
            consolidation_inputs(job),
        output:
            job.marker(SETTINGS.markers_dir, RUN_ID),
        log:
            str(LOG_DIR / "consolidate" / f"{job.label}.jsonl"),
        localrule: True
        params:
            symbols=list(job.symbols),
            month=job.label,
        run:
            consolidate_month(SETTINGS, params.symbols, params.month, log[0], output[0])
