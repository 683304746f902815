# Configuration, planning and run hooks shared by the rules. Validation stops a bad config
# before any request, naming the key (schema: workflow/schemas/config.schema.yaml).
# Planning is proportional to what is missing: one pass over the lake finds the
# (symbol, month) groups with missing partitions, and only those are asked of Snakemake,
# packed into jobs of up to `symbols_per_job` symbols that miss the same days.

from marketpipe.logs import current_run_id
from marketpipe.workflow.jobs import configure_workflow_process, finish_run, start_run
from marketpipe.workflow.planning import (
    fetch_jobs,
    load_fetch_jobs,
    pending_jobs,
    plan_months,
    plan_path,
    save_fetch_jobs,
)
from marketpipe.workflow.settings import load_settings

configure_workflow_process()
SETTINGS = load_settings(config)
DATA_DIR = SETTINGS.data_dir
MONTHS = plan_months(SETTINGS.config.start, SETTINGS.config.end)
LOG_DIR = DATA_DIR / "_logs"
REPORT_DIR = DATA_DIR / "_reports"
RUN_ID = current_run_id()
PLAN_PATH = plan_path(DATA_DIR, RUN_ID)
# The main process plans from the lake and saves the plan when the run starts. A job that
# Snakemake runs as a separate process reads this file again while other jobs are writing
# partitions, so it takes the run's saved plan rather than the lake's changed state.
FETCH_JOBS = None if workflow.is_main_process else load_fetch_jobs(PLAN_PATH, MONTHS)
if FETCH_JOBS is None:
    FETCH_JOBS = fetch_jobs(
        pending_jobs(DATA_DIR, SETTINGS.config.symbols, MONTHS), SETTINGS.config.symbols_per_job
    )


def pending_targets():
    """The paths that schedule every fetch job (see FetchJob.targets)."""
    return [target for job in FETCH_JOBS for target in job.targets(DATA_DIR)]


onstart:
    save_fetch_jobs(PLAN_PATH, FETCH_JOBS)
    start_run(SETTINGS)


onsuccess:
    finish_run(SETTINGS, "success")


onerror:
    finish_run(SETTINGS, "failed")
