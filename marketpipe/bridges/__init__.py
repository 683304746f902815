"""Bridges from the lake into backtesters: NautilusTrader catalogs, zipline bundles.

Each writes the lake's bars with the engine's own conventions (when a bar is stamped, which
session it covers, raw or adjusted prices) and says what it changed. The engines are the
optional ``backtest`` extra (``pip install 'marketpipe[backtest]'``), imported only when a
bridge is used.

Imports ``lake``, ``markettime`` and ``foundation`` (and the engines), never ``ingest``,
``workflow`` or ``commands``.
"""
