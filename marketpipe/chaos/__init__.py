"""Chaos tooling: crash points that kill a run like a power cut, and the crash trials.

Production code reaches this room only through :func:`crash_point` (``chaos.points``, which
imports nothing); ``chaos.trials`` is tooling on top that may import anything.
"""

from marketpipe.chaos.points import CRASH_POINTS, CRASH_VARIABLE, crash_point

__all__ = ["CRASH_POINTS", "CRASH_VARIABLE", "crash_point"]
