"""Keeps the lab's processes running, like systemd's ``Restart=always``.

``segscan-lab up`` starts ``python -m deploy.lab.supervisor STATE_DIR`` detached.
It starts every service of ``services.json`` (inside its namespace through
``ip netns exec``), restarts one that exits after a delay that doubles from
0.5 s to 8 s while it keeps failing fast, and rewrites the pids in
``state.json`` on every change.  SIGHUP rereads the plan (new services start,
removed or changed ones stop first); SIGTERM stops every service and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import structlog

from deploy.lab.logconfig import configure_logging
from deploy.lab.services import Service, ServicePlan, read_plan
from deploy.lab.state import ServiceState, ServiceStatus, read_state, write_state

RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 8.0
# A process that ran this long was healthy: its next restart is quick again.
STABLE_RUN_S = 10.0
STOP_TIMEOUT_S = 3.0
SUPERVISOR = "supervisor"

log = structlog.get_logger(__name__)


class Supervisor:
    """Runs the services of one lab's plan until told to stop."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._services: dict[str, Service] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, ServiceState] = {}
        self._wake = asyncio.Event()
        self._reload = False
        self._stop = False

    async def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every service."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        loop.add_signal_handler(signal.SIGTERM, self._request_stop)
        loop.add_signal_handler(signal.SIGINT, self._request_stop)
        await self._apply(read_plan(self._state_dir))
        log.info("supervisor_started", services=len(self._tasks))

        while not self._stop:
            await self._wake.wait()
            self._wake.clear()
            if self._reload and not self._stop:
                self._reload = False
                await self._reread()

        await self._stop_all()
        log.info("supervisor_stopped")

    def _request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def _request_stop(self) -> None:
        self._stop = True
        self._wake.set()

    async def _reread(self) -> None:
        try:
            plan = read_plan(self._state_dir)
        except (OSError, msgspec.DecodeError) as exc:
            log.error("supervisor_plan_unreadable", error=str(exc))
            return
        await self._apply(plan)
        log.info("supervisor_reloaded", services=len(self._tasks))

    async def _apply(self, plan: ServicePlan) -> None:
        wanted = {service.name: service for service in plan.services}
        going = [n for n in self._tasks if wanted.get(n) != self._services[n]]
        stopping = [self._tasks.pop(name) for name in going]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        for name in going:
            del self._services[name]
            self._states.pop(name, None)
        for name, service in wanted.items():
            if name not in self._tasks:
                self._services[name] = service
                self._tasks[name] = asyncio.create_task(self._keep_running(service))
        self._record()

    async def _stop_all(self) -> None:
        """Stop every service; their last states stay in state.json, pids go."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._record(final=True)

    async def _keep_running(self, service: Service) -> None:
        delay_s = RESTART_DELAY_S
        while True:
            started = time.monotonic()
            code = await self._run_once(service)
            ran_s = time.monotonic() - started
            if ran_s >= STABLE_RUN_S:
                delay_s = RESTART_DELAY_S
            log.warning(
                "service_exited",
                service=service.name,
                code=code,
                ran_s=round(ran_s, 3),
                restart_in_s=delay_s,
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_RESTART_DELAY_S)

    async def _run_once(self, service: Service) -> int:
        previous = self._states.get(service.name)
        starts = previous.starts + 1 if previous else 1
        last_exit = previous.last_exit if previous else None
        try:
            process = await _spawn(service, starts)
        except OSError as exc:
            log.error("service_unstartable", service=service.name, error=str(exc))
            self._set(service, ServiceStatus.RESTARTING, None, starts, 127)
            return 127
        self._set(service, ServiceStatus.RUNNING, process.pid, starts, last_exit)
        log.info("service_started", service=service.name, pid=process.pid, start=starts)
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await _terminate(process)
            self._set(service, ServiceStatus.STOPPED, None, starts, last_exit)
            raise
        self._set(service, ServiceStatus.RESTARTING, None, starts, code)

        return code

    def _set(
        self,
        service: Service,
        status: ServiceStatus,
        pid: int | None,
        starts: int,
        last_exit: int | None,
    ) -> None:
        self._states[service.name] = ServiceState(
            status=status,
            pid=pid,
            starts=starts,
            last_exit=last_exit,
            log=service.log,
            netns=service.netns,
        )
        self._record()

    def _record(self, final: bool = False) -> None:
        """Write the current pids into state.json (skipped once it is gone)."""
        state = read_state(self._state_dir)
        if state is None:
            return
        pids = {} if final else {SUPERVISOR: os.getpid()}
        pids |= {n: s.pid for n, s in self._states.items() if s.pid is not None}
        agents = {
            s.subnet: pids.get(s.name) for s in self._services.values() if s.subnet
        }
        subnets = {
            name: msgspec.structs.replace(subnet, agent_pid=agents.get(name))
            for name, subnet in state.subnets.items()
        }
        services = dict(self._states)
        state = msgspec.structs.replace(
            state, pids=pids, services=services, subnets=subnets
        )
        try:
            write_state(self._state_dir, state)
        except OSError as exc:
            # Keep supervising: a stale state file beats unsupervised processes.
            log.error("supervisor_state_unwritable", error=str(exc))


async def _spawn(service: Service, starts: int) -> asyncio.subprocess.Process:
    out = _open_log(service, starts)
    try:
        # A session of its own, so stopping it reaches its children too.
        return await asyncio.create_subprocess_exec(
            *_command(service),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=service.env,
            start_new_session=True,
        )
    finally:
        os.close(out)


def _command(service: Service) -> Sequence[str]:
    if service.netns is None:
        return service.argv
    # ip execs the command in place, so the pid is the command's own.
    return ("ip", "netns", "exec", service.netns, *service.argv)


def _open_log(service: Service, starts: int) -> int:
    out = os.open(service.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    os.write(out, f"--- segscan-lab: {service.name} start {starts} at {now}\n".encode())

    return out


async def _terminate(process: asyncio.subprocess.Process) -> None:
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Supervise the lab kept in STATE_DIR."""
    parser = argparse.ArgumentParser(prog="python -m deploy.lab.supervisor")
    parser.add_argument("state_dir", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    asyncio.run(Supervisor(args.state_dir).run())

    return 0


if __name__ == "__main__":
    sys.exit(main())
