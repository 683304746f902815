# Configuration, planning and run hooks shared by the rules. Validation stops a bad config
# before any request, naming the key (schema: workflow/schemas/config.schema.yaml).
# Only sessions that are final at the run's start are planned (see marketpipe.markettime.finality):
# today's session and the future are never fetched, written or shown as missing.
# Planning is proportional to what is missing: one pass over the lake finds the
# (symbol, month) groups with missing partitions, and only those are asked of Snakemake,
# packed into jobs of up to `symbols_per_job` symbols that miss the same days.

import sys
from pathlib import Path

from marketpipe.foundation.files import remove_dead_temporaries
from marketpipe.observability.logs import current_run_id, workflow_run_id
from marketpipe.workflow.run import (
    configure_workflow_process,
    fence_job_writes,
    finish_run,
    hold_run_lock,
    repair_damaged_before_planning,
    start_run,
    use_private_state,
)
from marketpipe.workflow.announce import announce_missing, announce_run_scope, stop_on_bad_settings
from marketpipe.workflow.console import quiet_snakemake_console
from marketpipe.workflow.consolidation import pending_consolidations
from marketpipe.workflow.planning import (
    fetch_jobs,
    fetched_months,
    outputs_are_markers,
    pending_jobs,
    plan_months,
)
from marketpipe.workflow.run_plan import RunPlan, load_run_plan, run_plan_location, save_run_plan
from marketpipe.workflow.news_planning import news_marker, news_recheck_due, pending_news_jobs
from marketpipe.workflow.tick_planning import pending_tick_jobs
from marketpipe.workflow.config_loading import load_settings

configure_workflow_process()
# A bad key, value or environment variable stops here in one line (exit 2), as does a lake
# holding another vendor's, feed's, timeframe's or adjustment's bars (checked once, in the
# main process: a job claims the identity when it writes).
with stop_on_bad_settings():
    SETTINGS = load_settings(config)
    if workflow.is_main_process:
        SETTINGS.require_same_lake()
        # Snakemake's per-job listing stays in its log file while jobs run; a dry run shows it.
        quiet_snakemake_console(
            lambda: workflow.executor_plugin is not None and not workflow.dryrun
        )
if not workflow.is_main_process:
    use_private_state(SETTINGS)
    fence_job_writes(SETTINGS)
STATE_DIR = SETTINGS.state_dir
LOG_DIR = STATE_DIR / "_logs"
REPORT_DIR = STATE_DIR / "_reports"
# The main process starts a run of its own (or the one `marketpipe update` handed over);
# the job processes it starts inherit its id.
RUN_ID = workflow_run_id() if workflow.is_main_process else current_run_id()
PLAN_PATH = run_plan_location(SETTINGS, RUN_ID)
# The main process plans from the lake at its instant and saves the plan when the run
# starts. A job that Snakemake runs as a separate process reads this file again later,
# while other jobs write partitions: it takes the run's saved instant and jobs instead of
# the clock's and the lake's changed state.
SAVED_PLAN = None if workflow.is_main_process else load_run_plan(PLAN_PATH)
if workflow.is_main_process:
    # A run killed while writing a marker left a temporary file in its own run's directory.
    remove_dead_temporaries(SETTINGS.markers_dir)
    repair_damaged_before_planning(SETTINGS, sys.argv)
if SAVED_PLAN is None:
    FETCH_JOBS = fetch_jobs(
        pending_jobs(
            SETTINGS.lake,
            SETTINGS.config.symbols,
            plan_months(SETTINGS.final_days),
            SETTINGS.expected_days,
        ),
        SETTINGS.symbols_per_job,
    )
    CONSOLIDATIONS = pending_consolidations(SETTINGS, fetched_months(FETCH_JOBS))
    NEWS_JOBS = pending_news_jobs(SETTINGS)
    NEWS_MARKER = news_marker(SETTINGS)
    RECHECK_NEWS = news_recheck_due(SETTINGS)
    TICK_JOBS = pending_tick_jobs(SETTINGS)
else:
    SETTINGS = SETTINGS.at(SAVED_PLAN.now)
    FETCH_JOBS = SAVED_PLAN.jobs
    CONSOLIDATIONS = SAVED_PLAN.consolidations
    NEWS_JOBS = SAVED_PLAN.news_jobs
    NEWS_MARKER = SAVED_PLAN.news_marker or news_marker(SETTINGS)
    RECHECK_NEWS = SAVED_PLAN.news_marker is not None
    TICK_JOBS = SAVED_PLAN.tick_jobs
if workflow.is_main_process:
    announce_run_scope(SETTINGS, FETCH_JOBS)
    announce_missing(SETTINGS, FETCH_JOBS, TICK_JOBS)


# A local lake's jobs output their partitions; an S3 lake's, a marker file each (see
# FetchJob.marker): Snakemake would otherwise check every object with requests of its own.
# A plan of more partitions than Snakemake tracks quickly uses markers too.
LAKE_ON_S3 = not SETTINGS.lake.is_local
FETCH_MARKERS = outputs_are_markers(SETTINGS.lake.is_local, FETCH_JOBS)


def fetch_outputs(job):
    """What one fetch job produces, as Snakemake sees it."""
    if FETCH_MARKERS:
        return [job.marker(SETTINGS.markers_dir, RUN_ID)]
    return [update(path) for path in job.outputs(SETTINGS.lake.root)]


def news_outputs(job):
    """What one news job produces, as Snakemake sees it: its marker first when the lake is
    on S3 or some of its days are stored already (without a symbol's news)."""
    marker = [job.marker(SETTINGS.markers_dir, RUN_ID)]
    if LAKE_ON_S3:
        return marker
    files = [update(path) for path in job.outputs(SETTINGS.lake.root)]
    return [*marker, *files] if job.incomplete else files


def pending_targets():
    """The paths that schedule every fetch and news job (see FetchJob.targets)."""
    if LAKE_ON_S3:
        return [job.marker(SETTINGS.markers_dir, RUN_ID) for job in [*FETCH_JOBS, *NEWS_JOBS]]
    markers = [job.marker(SETTINGS.markers_dir, RUN_ID) for job in NEWS_JOBS if job.incomplete]
    if FETCH_MARKERS:
        fetch = [job.marker(SETTINGS.markers_dir, RUN_ID) for job in FETCH_JOBS]
    else:
        fetch = [target for job in FETCH_JOBS for target in job.targets(SETTINGS.lake.root)]
    news = [target for job in NEWS_JOBS for target in job.targets(SETTINGS.lake.root)]
    return [*markers, *fetch, *news]


def run_targets():
    """Every fetch and consolidation job, today's corporate-actions and securities checks and
    the coverage report, unless no session of the range is final."""
    if not SETTINGS.final_sessions:
        return []
    actions = [ACTIONS_MARKER] if SETTINGS.fetches_actions else []
    securities = [SECURITIES_MARKER] if SETTINGS.keeps_securities else []
    universe = [UNIVERSE_MARKER] if SETTINGS.config.universe else []
    news = [NEWS_MARKER] if RECHECK_NEWS else []
    months = [job.marker(SETTINGS.markers_dir, RUN_ID) for job in CONSOLIDATIONS]
    ticks = [job.marker(SETTINGS.markers_dir, RUN_ID, i) for i, job in enumerate(TICK_JOBS)]
    return [
        *pending_targets(),
        *ticks,
        *months,
        *actions,
        *securities,
        *universe,
        *news,
        *rules.coverage_report.output,
    ]


def planned_job_count():
    """The jobs that leave a record: every fetch, news and tick job, today's corporate-actions
    and securities checks unless they ran already, and today's news recheck if due (a run's
    summary counts those that never finished)."""
    if not SETTINGS.final_sessions:  # run_targets() is empty: no job runs
        return 0
    check = SETTINGS.fetches_actions and not Path(ACTIONS_MARKER).exists()
    securities = SETTINGS.keeps_securities and not Path(SECURITIES_MARKER).exists()
    return (
        len(FETCH_JOBS)
        + len(NEWS_JOBS)
        + len(TICK_JOBS)
        + int(check)
        + int(securities)
        + int(RECHECK_NEWS)
    )


# With the budget split into shares, at most that many fetch jobs run at once (each one
# spends one share of the requests per minute; see budget_shares in the vendor's section).
if SETTINGS.vendor_section.budget_shares > 1:
    workflow.register_resource("api", SETTINGS.vendor_section.budget_shares)

# Small jobs that keep the controller's ledger and report run where the controller does,
# also when the fetch jobs go to a cluster.
localrules:
    corporate_actions,
    security_master,
    universe,
    news_recheck,
    coverage_report,


onstart:
    hold_run_lock(SETTINGS)
    save_run_plan(
        PLAN_PATH,
        RunPlan(
            SETTINGS.now,
            FETCH_JOBS,
            ACTIONS_MARKER,
            NEWS_JOBS,
            NEWS_MARKER if RECHECK_NEWS else None,
            CONSOLIDATIONS,
            SECURITIES_MARKER if SETTINGS.keeps_securities else None,
            TICK_JOBS,
        ),
    )
    start_run(SETTINGS, planned_jobs=planned_job_count())


onsuccess:
    finish_run(SETTINGS, "success")


onerror:
    finish_run(SETTINGS, "failed")
