# Trades and quotes (off by default: trades.fetch / quotes.fetch), one file per symbol and
# final session: <data_dir>/trades/symbol=S/year=YYYY/month=MM/day=DD/trades.parquet (quotes
# alike; see marketpipe.lake.ticks). One job per kind, symbol and month with missing days;
# its output is a marker of this run (the run's first lines name the missing days). Polygon's
# jobs wait for the security master: a renamed security's days are asked for under the
# ticker it traded as then.

from marketpipe.workflow.tick_jobs import fetch_ticks

for index, job in enumerate(TICK_JOBS):

    rule:
        name:
            f"{job.name}_{index}"
        input:
            [str(SECURITIES_MARKER)] if SETTINGS.fetches_by_security else [],
        output:
            job.marker(SETTINGS.markers_dir, RUN_ID, index),
        log:
            str(LOG_DIR / "ticks" / f"{job.name}_{index}.jsonl"),
        resources:
            api=1,
        params:
            kind=job.kind,
            symbol=job.symbol,
            days=[day.isoformat() for day in job.missing],
        run:
            fetch_ticks(SETTINGS, params.kind, params.symbol, params.days, log[0], output[0])
