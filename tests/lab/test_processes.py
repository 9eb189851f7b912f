"""Finding lab processes by their marker and ending them by pid."""

from __future__ import annotations

import os
import subprocess
import sys

from deploy.lab import processes
from deploy.lab.services import MARKER

SLEEP = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_marked_finds_lab_processes_only_and_stop_ends_them() -> None:
    lab = subprocess.Popen(SLEEP, env={**os.environ, MARKER: "/tmp/lab"})
    other = subprocess.Popen(
        SLEEP, env={k: v for k, v in os.environ.items() if k != MARKER}
    )
    try:
        marked = processes.marked()
        stopped = processes.stop([lab.pid], timeout_s=5)

        assert lab.pid in marked
        assert other.pid not in marked
        assert stopped == 1
        assert not processes.alive(lab.pid)
    finally:
        for process in (lab, other):
            process.kill()
            process.wait()


def test_stop_kills_what_ignores_sigterm() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stubborn.stdout is not None
        stubborn.stdout.readline()
        processes.stop([stubborn.pid], timeout_s=0.2)

        assert stubborn.wait(timeout=5) == -9
    finally:
        stubborn.kill()
        stubborn.wait()
        if stubborn.stdout is not None:
            stubborn.stdout.close()


def test_cpu_ticks_are_read_for_live_processes_only() -> None:
    ticks = processes.cpu_ticks(os.getpid())

    assert ticks is not None
    assert processes.cpu_ticks(2**22 + 7) is None
