"""Ground floor: atomic file writes and SQLite plumbing, with no market knowledge.

Imports nothing of MarketPipe but the ``chaos`` crash-point hook; every other package may import it.
"""
