# One job per (symbol, month): its outputs are that month's planned day partitions,
# marked update() so a rerun keeps the days that exist and fetches only the missing ones.
# Rules are generated per month because outputs cannot depend on wildcards; month values
# reach the job through params (a run: block would see the loop variable's last value).

from marketpipe.workflow.jobs import fetch_partitions

for month in PENDING_MONTHS:

    rule:
        name:
            f"fetch_{month.label}"
        output:
            [update(path) for path in month_outputs(DATA_DIR, "{symbol}", month)],
        log:
            str(LOG_DIR / "fetch" / "{symbol}" / f"{month.label}.jsonl"),
        params:
            days=[day.isoformat() for day in month.days],
        run:
            fetch_partitions(SETTINGS, wildcards.symbol, params.days, log[0])
