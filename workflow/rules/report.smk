# The coverage report, refreshed whenever a partition changes. `snakemake --report
# report.html` embeds the picture; marketpipe report writes the same files on demand.

from marketpipe.workflow.jobs import write_coverage_report


rule coverage_report:
    input:
        pending_targets(),
    output:
        png=report(
            str(REPORT_DIR / "coverage.png"),
            caption="../report/coverage.rst",
            category="Coverage",
        ),
        html=str(REPORT_DIR / "coverage.html"),
    log:
        str(LOG_DIR / "report.jsonl"),
    run:
        write_coverage_report(SETTINGS, REPORT_DIR, log[0])
