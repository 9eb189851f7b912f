"""The supervisor: starts the plan, restarts what dies, rereads on SIGHUP, stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.lab import processes
from deploy.lab.services import Service, write_plan
from deploy.lab.state import LabState, ServiceStatus, read_state, write_state
from tests.lab.helpers import sample_state

SLEEP = (sys.executable, "-c", "import time; time.sleep(60)")
WAIT_S = 10.0


def _service(tmp_path: Path, name: str, argv: tuple[str, ...] = SLEEP) -> Service:
    subnet = name.removeprefix("agent-") if name.startswith("agent-") else None
    log = str(tmp_path / f"{name}.log")

    return Service(name, argv, {"PATH": os.environ["PATH"]}, log, None, subnet)


def _wait_for(tmp_path: Path, done: Callable[[LabState], bool]) -> LabState:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = read_state(tmp_path)
        if state is not None and done(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"supervisor state never got there: {read_state(tmp_path)}")


def _running(*names: str) -> Callable[[LabState], bool]:
    def check(state: LabState) -> bool:
        return all(
            name in state.services
            and state.services[name].status is ServiceStatus.RUNNING
            for name in names
        )

    return check


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    write_state(tmp_path, sample_state(tmp_path))
    write_plan(
        tmp_path, (_service(tmp_path, "sleeper"), _service(tmp_path, "agent-cde-a"))
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.lab.supervisor", str(tmp_path)],
    )
    try:
        yield process
    finally:
        state = read_state(tmp_path)
        process.terminate()
        process.wait(timeout=WAIT_S)
        if state is not None:
            processes.stop(state.pids.values(), timeout_s=1)


def test_starts_every_service_and_records_its_pid(
    tmp_path: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    state = _wait_for(tmp_path, _running("sleeper", "agent-cde-a"))

    assert state.pids["supervisor"] == supervisor.pid
    assert state.subnets["cde-a"].agent_pid == state.pids["agent-cde-a"]
    assert all(processes.alive(pid) for pid in state.pids.values())
    assert state.services["sleeper"].starts == 1
    assert "sleeper start 1 at" in (tmp_path / "sleeper.log").read_text()


def test_restarts_a_service_that_dies(
    tmp_path: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    first = _wait_for(tmp_path, _running("agent-cde-a")).pids["agent-cde-a"]
    os.kill(first, signal.SIGKILL)
    state = _wait_for(
        tmp_path,
        lambda s: (
            s.services["agent-cde-a"].starts == 2
            and s.services["agent-cde-a"].status is ServiceStatus.RUNNING
        ),
    )

    assert state.services["agent-cde-a"].last_exit == -signal.SIGKILL
    assert state.subnets["cde-a"].agent_pid not in (None, first)
    assert processes.alive(state.pids["agent-cde-a"])


def test_sighup_starts_new_services_and_stops_removed_ones(
    tmp_path: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    old = _wait_for(tmp_path, _running("sleeper")).pids["sleeper"]
    write_plan(
        tmp_path, (_service(tmp_path, "agent-cde-a"), _service(tmp_path, "extra"))
    )
    supervisor.send_signal(signal.SIGHUP)
    state = _wait_for(
        tmp_path, lambda s: "sleeper" not in s.services and _running("extra")(s)
    )

    assert not processes.alive(old)
    assert set(state.services) == {"agent-cde-a", "extra"}


def test_sigterm_stops_every_service_then_the_supervisor(
    tmp_path: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    state = _wait_for(tmp_path, _running("sleeper", "agent-cde-a"))
    supervisor.terminate()

    assert supervisor.wait(timeout=WAIT_S) == 0
    assert not any(processes.alive(pid) for pid in state.pids.values())
    final = read_state(tmp_path)
    assert final is not None
    assert final.pids == {}
    assert final.subnets["cde-a"].agent_pid is None
    assert {s.status for s in final.services.values()} == {ServiceStatus.STOPPED}


def test_a_crash_looping_service_is_restarted_with_growing_delays(
    tmp_path: Path, supervisor: subprocess.Popen[bytes]
) -> None:
    _wait_for(tmp_path, _running("sleeper"))
    crashing = _service(tmp_path, "crasher", (sys.executable, "-c", "exit(3)"))
    write_plan(tmp_path, (crashing,))
    supervisor.send_signal(signal.SIGHUP)
    _wait_for(tmp_path, lambda s: "crasher" in s.services)
    time.sleep(2.0)
    state = read_state(tmp_path)

    assert state is not None
    # Delays of 0.5 s, then 1 s: three starts fit in 2 s, five would not.
    assert 2 <= state.services["crasher"].starts <= 3
    assert state.services["crasher"].last_exit == 3
