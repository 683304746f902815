"""Workflow glue: configuration, planning, vendor selection, status and the jobs Snakemake runs.

Imports every stage below it (ingest, lake, connectors, the simulator for ``vendor: demo``);
only ``commands`` and ``cli`` import it.
"""
