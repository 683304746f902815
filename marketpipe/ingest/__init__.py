"""Ingest: from a connector's pages to validated lake writes (bars, corporate actions).

Imports ``connectors``, ``lake``, ``markettime``, ``observability`` and ``foundation``, never
``workflow``, ``commands`` or the simulator.
"""
