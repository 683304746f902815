# Configuration, planning and run hooks shared by the rules. Validation stops a bad config
# before any request, naming the key (schema: workflow/schemas/config.schema.yaml).

from marketpipe.logs import current_run_id
from marketpipe.workflow.jobs import finish_run, start_run
from marketpipe.workflow.planning import month_outputs, plan_months
from marketpipe.workflow.settings import load_settings

SETTINGS = load_settings(config)
DATA_DIR = SETTINGS.data_dir
MONTHS = plan_months(SETTINGS.config.start, SETTINGS.config.end)
LOG_DIR = DATA_DIR / "_logs"
REPORT_DIR = DATA_DIR / "_reports"
RUN_ID = current_run_id()


wildcard_constraints:
    symbol=r"[A-Z][A-Z0-9]{0,9}(\.[A-Z0-9]{1,4})?",


def all_partitions():
    """Every planned partition: one per symbol and trading day."""
    return [
        path
        for symbol in SETTINGS.config.symbols
        for month in MONTHS
        for path in month_outputs(DATA_DIR, symbol, month)
    ]


onstart:
    start_run(SETTINGS)


onsuccess:
    finish_run(SETTINGS, "success")


onerror:
    finish_run(SETTINGS, "failed")
