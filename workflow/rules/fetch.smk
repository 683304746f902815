# One job per month and group of up to `symbols_per_job` symbols missing the same days:
# its outputs are those symbols' partitions of the month, marked update() so a rerun keeps
# the days that exist and fetches only the missing ones. Symbols and days reach the job
# through params (a run: block would see the loop variable's last value). Polygon's jobs
# wait for the security master: a renamed security's days are asked for under the ticker
# it traded as then.

from marketpipe.workflow.jobs import fetch_partitions

for index, job in enumerate(FETCH_JOBS):

    rule:
        name:
            f"fetch_{job.month.label}_{index}"
        input:
            [str(SECURITIES_MARKER)] if SETTINGS.fetches_by_security else [],
        output:
            fetch_outputs(job),
        log:
            str(LOG_DIR / "fetch" / f"{job.name}.jsonl"),
        resources:
            api=1,
        params:
            symbols=list(job.symbols),
            days=[day.isoformat() for day in job.month.days],
        run:
            fetch_partitions(
                SETTINGS,
                params.symbols,
                params.days,
                log[0],
                done_marker=output[0] if FETCH_MARKERS else None,
            )
