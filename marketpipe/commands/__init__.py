"""What the ``marketpipe`` commands compute; ``marketpipe.cli`` only formats and prints.

The top floor with ``cli``: may import every package; nothing but ``cli`` imports it.
"""
