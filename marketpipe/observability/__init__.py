"""Observability: JSON logs with secrets scrubbed, request metrics, run summaries and alerts.

Imports only ``foundation`` and ``markettime``; every layer from the connectors up may import it.
"""
