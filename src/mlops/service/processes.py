"""Who is deploying (or restoring): a pending snapshot names its process, so that another
process can tell a deploy still running its migration from one that died (SIGKILL, a crash, a
reboot); a restore's claim names its process the same way."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    if fields and fields[0] in ("Z", "X"):
        return "zombie"  # dead, not yet reaped by its parent
    return fields[19] if len(fields) > 19 else None


def this_process(at: datetime) -> dict[str, Any]:
    """The identity a pending snapshot records: host, boot, pid, the pid's start, and when."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "boot": _boot_id(),
        "pid": pid,
        "process_start": _process_start(pid),
        "started_at": at.isoformat(),
    }


def process_alive(deployer: Mapping[str, Any] | None) -> bool:
    """Whether the process that recorded `deployer` (`this_process`: a deploy's, or the one
    that claimed a restore) may still be running.

    On this host it is gone when the host rebooted since, when no process has its pid, when
    that pid is a zombie, or when the pid now belongs to a process started at another time.
    A deployer on another host cannot be checked from here: it counts as alive, and its
    deploy is recovered by the next `mlops deploy`, `mlops rollback` or controller on its host.
    """
    if not deployer or deployer.get("pid") is None:
        return False
    if deployer.get("host") != socket.gethostname():
        return True
    boot = _boot_id()
    if deployer.get("boot") and boot and deployer["boot"] != boot:
        return False
    pid = int(deployer["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process holds that pid
    start = _process_start(pid)
    if start == "zombie":
        return False
    recorded = deployer.get("process_start")
    return not (recorded and start and start != recorded)
