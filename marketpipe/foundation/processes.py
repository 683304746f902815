"""Who a process is, beyond a pid and a hostname, and whether it has died.

Containers on different machines often share a hostname, and pids are reused. A process is
named by its pid, the kernel's boot id, its pid namespace and its start time (in clock ticks
since boot): a holder recorded with all four is known dead when, in the same boot and pid
namespace, no process with that pid and start time exists. Anything less certain (another
machine, another namespace, a record without these fields) counts as alive.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started, in ticks since boot."""
    stat = _read(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink(_PROC / "self" / "ns" / "pid")
    except OSError:
        return None


def process_identity() -> dict[str, Any]:
    """This process: pid, host, boot id, pid namespace and start time (None where unknown)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": _read(_PROC / "sys" / "kernel" / "random" / "boot_id"),
        "pid_namespace": _pid_namespace(),
        "start_ticks": _start_ticks(os.getpid()),
    }


def died_here(identity: dict[str, Any]) -> bool:
    """Whether ``identity`` names a process of this boot and pid namespace that is gone."""
    mine = process_identity()
    for field in ("boot_id", "pid_namespace"):
        if identity.get(field) is None or identity.get(field) != mine[field]:
            return False
    try:
        pid = int(identity["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    started = _start_ticks(pid)
    if started is None:
        return not (_PROC / str(pid)).exists()
    return identity.get("start_ticks") is not None and started != identity["start_ticks"]
