"""The lake: layout, object stores, atomic writes, ledger, locks and leases, validation, reading.

Imports ``connectors`` (the canonical schemas) and the floors below it; never ``ingest``,
``workflow``, ``commands`` or the simulator.
"""
