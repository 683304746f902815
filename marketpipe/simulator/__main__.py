"""``python -m marketpipe.simulator``: run the simulator in the foreground."""

from marketpipe.simulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
