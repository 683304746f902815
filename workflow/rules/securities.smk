# The security master: which security each configured symbol names, under which tickers,
# listed or delisted when, in <data_dir>/securities/securities.parquet. The job runs once per
# New York date that a run happens, and again when the symbols or the range end change (its
# output is a marker file; see marketpipe.workflow.planning.securities_marker). Alpaca's
# facts come from the corporate actions the lake keeps, so that job runs first.

from marketpipe.workflow.planning import securities_marker
from marketpipe.workflow.securities_jobs import (
    publish_universe,
    refresh_security_master,
    universe_marker,
)

# Decided once, by the main process (a job process reads it from the run's saved plan).
if SAVED_PLAN is not None and SAVED_PLAN.securities_marker is not None:
    SECURITIES_MARKER = SAVED_PLAN.securities_marker
else:
    SECURITIES_MARKER = securities_marker(SETTINGS)


rule security_master:
    input:
        [str(ACTIONS_MARKER)] if SETTINGS.fetches_actions else [],
    output:
        str(SECURITIES_MARKER),
    log:
        str(LOG_DIR / "securities" / f"{SECURITIES_MARKER.stem}.jsonl"),
    resources:
        api=1,
    run:
        refresh_security_master(SETTINGS, output[0], log[0])


# The universe's membership (config `universe: {file}`), kept in the lake for
# marketpipe.members() and the readers; again only when the file or the range changes.
UNIVERSE_MARKER = universe_marker(SETTINGS)


rule universe:
    output:
        str(UNIVERSE_MARKER),
    log:
        str(LOG_DIR / "universe" / f"{UNIVERSE_MARKER.stem}.jsonl"),
    run:
        publish_universe(SETTINGS, output[0], log[0])
