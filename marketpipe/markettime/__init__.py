"""Market time: the one clock, trading calendar and sessions, timeframes and finality.

Imports only ``foundation``; every layer above (connectors, lake, ingest ...) may import it.
"""
