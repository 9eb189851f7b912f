"""Finding and ending the lab's processes by pid.

Every lab process carries ``SEGSCAN_LAB`` in its environment, so ``down`` finds
them even when the state file is gone: it never matches processes by name.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from deploy.lab.services import MARKER

POLL_S = 0.05
KILL_WAIT_S = 1.0

_MARKER = MARKER.encode() + b"="


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)

    return fields is not None and fields[0] != "Z"


def cpu_ticks(pid: int) -> int | None:
    """CPU time ``pid`` has used so far, in clock ticks; None if it is gone."""
    fields = _stat(pid)

    return int(fields[11]) + int(fields[12]) if fields else None


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state letter on (the command name can hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None

    return stat.rpartition(")")[2].split()


def marked() -> list[int]:
    """Pids of the processes a lab started (they carry ``SEGSCAN_LAB``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(_MARKER) for item in environ.split(b"\0")):
            pids.append(int(entry.name))

    return pids


def stop(pids: Iterable[int], timeout_s: float) -> int:
    """SIGTERM ``pids``, SIGKILL what outlives ``timeout_s``; how many were alive."""
    running = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    if not _wait_gone(running, timeout_s):
        for pid in running:
            _signal(pid, signal.SIGKILL)
        _wait_gone(running, KILL_WAIT_S)

    return len(running)


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)

    return True


def _signal(pid: int, signum: signal.Signals) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False

    return True
