# Corporate actions (splits, dividends ...) of the configured symbols, kept beside the bars
# in <data_dir>/corporate_actions/symbol=S/actions.parquet so reads can adjust raw bars.
# The job runs once per New York date that a run happens: its output is that date's marker.

from marketpipe.workflow.jobs import fetch_corporate_actions
from marketpipe.workflow.planning import actions_marker

ACTIONS_MARKER = actions_marker(SETTINGS.markers_dir, SETTINGS.now)


rule corporate_actions:
    output:
        str(ACTIONS_MARKER),
    log:
        str(LOG_DIR / "corporate_actions" / f"{ACTIONS_MARKER.stem}.jsonl"),
    resources:
        api=1,
    run:
        fetch_corporate_actions(SETTINGS, output[0], log[0])
