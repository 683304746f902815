"""A faithful simulator of the vendors' market-data APIs, for offline runs and tests.

Beside the connectors it imitates: imports only ``markettime`` and ``foundation``, never a
connector (it must not share our client's assumptions); ``workflow`` runs it for ``vendor: demo``.
"""

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
