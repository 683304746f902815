"""The crash-point hook: production code calls :func:`crash_point`, which a crash trial arms.

Ground floor: it imports nothing of MarketPipe. The trials that arm it and check the lake
afterwards are tooling of the tests and benchmarks (``tests/chaos_trials.py``).
"""

from marketpipe.chaos.points import CRASH_POINTS, CRASH_VARIABLE, crash_point

__all__ = ["CRASH_POINTS", "CRASH_VARIABLE", "crash_point"]
