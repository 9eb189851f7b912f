"""Bounded waits for lab processes to run and answer, failing fast when one dies.

Each wait polls the supervisor's view in state.json, so a process that exits is
reported at once, by name and with its log, instead of at the deadline.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from deploy.lab import processes
from deploy.lab.errors import ServiceError
from deploy.lab.services import Service, log_path
from deploy.lab.state import LabState, ServiceStatus, read_state
from deploy.lab.supervisor import SUPERVISOR

POLL_S = 0.1
HTTP_POLL_S = 0.2
HTTP_TIMEOUT_S = 1.0
SETTLE_POLL_S = 0.25
# At most this much CPU (in clock ticks, usually 10 ms) per poll counts as idle.
IDLE_TICKS = 2

# The lab's endpoints are local: never ask a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_running(state_dir: Path, started: Sequence[Service], timeout_s: float) -> None:
    """Wait until the supervisor runs every service of ``started``."""
    names = [service.name for service in started]
    deadline = time.monotonic() + timeout_s
    while True:
        state = read_state(state_dir)
        check_alive(state_dir, state, names)
        if state is not None and _all_running(state, names):
            return
        if time.monotonic() >= deadline:
            raise ServiceError(
                SUPERVISOR,
                f"lab processes did not start within {timeout_s:g} s",
                log_path(state_dir, SUPERVISOR),
            )
        time.sleep(POLL_S)


def wait_settled(
    state_dir: Path, started: Sequence[Service], settle_s: float, timeout_s: float
) -> None:
    """Wait until ``started`` ran ``settle_s`` and went idle, or ``timeout_s`` passed.

    A fresh Python process spends its first seconds importing (longer with a
    dozen starting on two cores); a bad start dies at the end of that, so ``up``
    waits for the processes to stop burning CPU before it calls them running.
    """
    names = [service.name for service in started]
    now = time.monotonic()
    earliest, deadline = now + settle_s, now + max(settle_s, timeout_s)
    previous: dict[str, int | None] = {}
    while True:
        state = read_state(state_dir)
        check_alive(state_dir, state, names)
        ticks = _cpu_ticks(state, names)
        idle = all(_idle(previous.get(name), ticks[name]) for name in names)
        now = time.monotonic()
        if (idle and now >= earliest) or now >= deadline:
            return
        previous = ticks
        time.sleep(SETTLE_POLL_S)


def _cpu_ticks(state: LabState | None, names: Sequence[str]) -> dict[str, int | None]:
    services = state.services if state else {}
    ticks: dict[str, int | None] = {}
    for name in names:
        pid = services[name].pid if name in services else None
        ticks[name] = processes.cpu_ticks(pid) if pid is not None else None

    return ticks


def _idle(before: int | None, now: int | None) -> bool:
    return before is not None and now is not None and now - before <= IDLE_TICKS


def wait_http(state_dir: Path, name: str, url: str, timeout_s: float) -> None:
    """Wait until service ``name`` answers HTTP at ``url`` with any status."""
    _wait_answer(state_dir, name, url, timeout_s, need_ok=False)


def wait_healthy(state_dir: Path, name: str, base_url: str, timeout_s: float) -> None:
    """Wait until service ``name`` answers ``GET /healthz`` with 200."""
    _wait_answer(state_dir, name, f"{base_url}/healthz", timeout_s, need_ok=True)


def check_alive(state_dir: Path, state: LabState | None, names: Sequence[str]) -> None:
    """Raise ``ServiceError`` if the supervisor or one of ``names`` has exited."""
    if state is None:
        return
    for name in names:
        service = state.services.get(name)
        if service is not None and service.last_exit is not None:
            raise ServiceError(
                name, _exit_text(name, service.last_exit), Path(service.log)
            )
    supervisor = state.pids.get(SUPERVISOR)
    if supervisor is not None and not processes.alive(supervisor):
        raise ServiceError(
            SUPERVISOR, "the lab supervisor exited", log_path(state_dir, SUPERVISOR)
        )


def _all_running(state: LabState, names: Sequence[str]) -> bool:
    return all(
        name in state.services and state.services[name].status is ServiceStatus.RUNNING
        for name in names
    )


def _wait_answer(
    state_dir: Path, name: str, url: str, timeout_s: float, need_ok: bool
) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(url, need_ok):
        check_alive(state_dir, read_state(state_dir), [name])
        if time.monotonic() >= deadline:
            raise ServiceError(
                name,
                f"{name} did not answer {url} within {timeout_s:g} s",
                log_path(state_dir, name),
            )
        time.sleep(HTTP_POLL_S)


def _answers(url: str, need_ok: bool) -> bool:
    try:
        with _OPENER.open(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status == 200 or not need_ok
    except urllib.error.HTTPError as exc:
        exc.close()
        return not need_ok
    except OSError:
        # Refused, reset or timed out: not listening yet.
        return False


def _exit_text(name: str, code: int) -> str:
    if code < 0:
        return f"{name} was killed by signal {-code}"
    return f"{name} exited with code {code}"
