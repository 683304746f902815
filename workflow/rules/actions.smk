# Corporate actions (splits, dividends ...) of the configured symbols, kept beside the bars
# in <data_dir>/corporate_actions/symbol=S/actions.parquet so reads can adjust raw bars.
# The job runs once per New York date that a run happens (and again in a run that adds a
# symbol): its output is a marker file (see marketpipe.workflow.planning.actions_marker).

from marketpipe.workflow.jobs import fetch_corporate_actions
from marketpipe.workflow.planning import actions_marker

# Decided once, by the main process (a job process reads it from the run's saved plan).
if SAVED_PLAN is not None and SAVED_PLAN.actions_marker is not None:
    ACTIONS_MARKER = SAVED_PLAN.actions_marker
else:
    ACTIONS_MARKER = actions_marker(SETTINGS)


rule corporate_actions:
    output:
        str(ACTIONS_MARKER),
    log:
        str(LOG_DIR / "corporate_actions" / f"{ACTIONS_MARKER.stem}.jsonl"),
    resources:
        api=1,
    run:
        fetch_corporate_actions(SETTINGS, output[0], log[0])
