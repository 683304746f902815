"""An Alpaca-compatible market data simulator for offline runs and tests."""

from marketpipe.simulator.api import SimulatorApp, SimulatorConfig
from marketpipe.simulator.faults import FAULT_KINDS, FaultConfig
from marketpipe.simulator.market import BAD_BAR_KINDS, SyntheticMarket
from marketpipe.simulator.request_log import LoggedRequest, RequestLog, read_request_log
from marketpipe.simulator.server import SimulatorServer

__all__ = [
    "BAD_BAR_KINDS",
    "FAULT_KINDS",
    "FaultConfig",
    "LoggedRequest",
    "RequestLog",
    "SimulatorApp",
    "SimulatorConfig",
    "SimulatorServer",
    "SyntheticMarket",
    "read_request_log",
]
