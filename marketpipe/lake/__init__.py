"""The lake: partition paths and atomic deterministic writes, validation, the ledger, readers.

Everything that touches the lake's files goes through this package, so the lake can move
(to object storage, say) by changing it alone.
"""
