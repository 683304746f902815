"""Network facts shared by the connectors and the simulator."""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = {"localhost"}


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
