# Configuration, planning and run hooks shared by the rules. Validation stops a bad config
# before any request, naming the key (schema: workflow/schemas/config.schema.yaml).
# Planning is proportional to what is missing: one pass over the lake finds the
# (symbol, month) groups with missing partitions, and only those are asked of Snakemake.

from marketpipe.logs import current_run_id
from marketpipe.workflow.jobs import finish_run, start_run
from marketpipe.workflow.planning import month_outputs, pending_jobs, plan_months
from marketpipe.storage import partition_path
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


def pending_targets():
    """The missing partitions to request: each one of a partly present month (so `-n` names
    them all), and only the first of a month with nothing yet.

    Requesting one output is enough to schedule a whole month, and at scale asking Snakemake
    for every path of an empty history dominates planning: it matches each requested path
    against every rule's outputs (125,800 x 1,260 for 100 symbols x 5 years).
    """
    targets = []
    for job in PENDING:
        whole_month = len(job.missing) == len(job.month.days)
        days = job.missing[:1] if whole_month else job.missing
        targets.extend(str(partition_path(DATA_DIR, job.symbol, day)) for day in days)
    return targets


onstart:
    start_run(SETTINGS)


onsuccess:
    finish_run(SETTINGS, "success")


onerror:
    finish_run(SETTINGS, "failed")
