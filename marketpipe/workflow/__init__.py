"""Workflow glue: configuration, planning, vendor selection and the jobs Snakemake runs."""
