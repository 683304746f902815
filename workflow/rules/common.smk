# Configuration, planning and run hooks shared by the rules. Validation stops a bad config
# before any request, naming the key (schema: workflow/schemas/config.schema.yaml).
# Planning is proportional to what is missing: one pass over the lake finds the
# (symbol, month) groups with missing partitions, and only those are asked of Snakemake.

from marketpipe.logs import current_run_id
from marketpipe.workflow.jobs import finish_run, start_run
from marketpipe.workflow.planning import month_outputs, pending_jobs, plan_months
from marketpipe.workflow.settings import load_settings

SETTINGS = load_settings(config)
DATA_DIR = SETTINGS.data_dir
MONTHS = plan_months(SETTINGS.config.start, SETTINGS.config.end)
PENDING = pending_jobs(DATA_DIR, SETTINGS.config.symbols, MONTHS)
PENDING_MONTHS = sorted({job.month for job in PENDING}, key=lambda month: month.label)
LOG_DIR = DATA_DIR / "_logs"
REPORT_DIR = DATA_DIR / "_reports"
RUN_ID = current_run_id()


wildcard_constraints:
    symbol=r"[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?",


def pending_partitions():
    """Every partition of the (symbol, month) jobs that have something to fetch."""
    return [path for job in PENDING for path in month_outputs(DATA_DIR, job.symbol, job.month)]


onstart:
    start_run(SETTINGS)


onsuccess:
    finish_run(SETTINGS, "success")


onerror:
    finish_run(SETTINGS, "failed")
