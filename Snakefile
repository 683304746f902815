# MarketPipe: one-minute bars for the symbols in config/config.yaml, as a Parquet lake of
# <data_dir>/ohlcv/symbol=S/year=YYYY/month=MM/day=DD/bars.parquet partitions.
#
#   snakemake --cores 8        fetch whatever is missing (profiles/default is picked up)
#   snakemake -n               list exactly the missing partitions
#
# The rules live in workflow/rules/; they call functions of the marketpipe package.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/actions.smk"
include: "workflow/rules/securities.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/consolidate.smk"
include: "workflow/rules/news.smk"
include: "workflow/rules/ticks.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        run_targets(),
    default_target: True
