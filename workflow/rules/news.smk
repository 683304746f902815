# News about the configured symbols, one file per New York day of the range that is over:
# <data_dir>/news/year=YYYY/month=MM/day=DD/news.parquet (see marketpipe.lake.news). One
# job per month with missing days; its outputs are the month's day files, marked update()
# so a rerun keeps the days that exist (and a marker, when days stored before a symbol was
# added are due again: their files exist). Once per New York date a run also re-reads the
# last news.recheck_days stored days (output: a marker, see news_planning.news_marker).

from marketpipe.workflow.news_jobs import fetch_news, recheck_news


for job in NEWS_JOBS:

    rule:
        name:
            job.name
        output:
            news_outputs(job),
        log:
            str(LOG_DIR / "news" / f"{job.name}.jsonl"),
        resources:
            api=1,
        params:
            days=[day.isoformat() for day in job.missing],
            # (run: blocks see the loop's last job, params this one's)
            marker=job.marker(SETTINGS.markers_dir, RUN_ID) if LAKE_ON_S3 or job.incomplete else "",
        run:
            fetch_news(SETTINGS, params.days, log[0], done_marker=params.marker or None)


rule news_recheck:
    output:
        str(NEWS_MARKER),
    log:
        str(LOG_DIR / "news" / f"{NEWS_MARKER.stem}.jsonl"),
    resources:
        api=1,
    params:
        fresh=[day.isoformat() for job in NEWS_JOBS for day in job.missing],
    run:
        recheck_news(SETTINGS, output[0], log[0], params.fresh)
