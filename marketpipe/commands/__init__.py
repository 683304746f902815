"""What the ``marketpipe`` commands compute; ``marketpipe.cli`` only formats and prints."""
