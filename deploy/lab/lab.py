"""Bringing a lab up, taking it down and reading how it is: the API behind the CLI.

``up`` builds the network, writes state.json, starts the supervisor with the
workloads (and, unless the caller wants the network only, SQS and the
coordinator), waits until they answer, creates the queues, then adds one agent
per subnet and checks that nothing died while settling.  ``down`` ends the
processes and deletes what the network made, found by name, so it also works
after a crash.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from deploy.lab import network, processes, services, trust
from deploy.lab.errors import LabStateError, PrivilegeError, ServiceError
from deploy.lab.queues import create_queues
from deploy.lab.readiness import (
    wait_healthy,
    wait_http,
    wait_running,
    wait_settled,
)
from deploy.lab.services import ControlPlane, Service
from deploy.lab.spec import LabSpec
from deploy.lab.state import (
    DEFAULT_STATE_DIR,
    LOGS_DIR,
    HostState,
    LabState,
    SubnetState,
    read_state,
    state_path,
    write_state,
)
from deploy.lab.supervisor import STOP_TIMEOUT_S, SUPERVISOR
from deploy.lab.topology import (
    MANAGEMENT_BRIDGE,
    MANAGEMENT_IP,
    TRANSIT_NAMESPACE,
    Topology,
    plan,
)
from protocol.ports import format_ports

SETTLE_S = 1.0
READY_TIMEOUT_S = 30.0

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Removed:
    """What ``down`` removed."""

    processes: int
    namespaces: int
    links: int


@dataclass(frozen=True)
class Status:
    """A running lab's state and which of its processes are alive."""

    state: LabState
    alive: dict[str, bool]

    @property
    def healthy(self) -> bool:
        return all(self.alive.values())


def require_root() -> None:
    """Raise ``PrivilegeError`` unless running as root."""
    if os.geteuid() != 0:
        raise PrivilegeError(
            "root", "must run as root: the lab creates namespaces, links and rules"
        )


def up(
    spec: LabSpec,
    *,
    control: ControlPlane | None,
    state_dir: Path = DEFAULT_STATE_DIR,
    ready_timeout_s: float = READY_TIMEOUT_S,
    settle_s: float = SETTLE_S,
) -> LabState:
    """Build and start the lab of ``spec``; ``control=None`` builds the network only.

    Raises ``LabStateError`` if a lab (or what is left of one) exists.  A process
    that dies while starting raises ``ServiceError`` and leaves the lab up for a
    look; ``down`` removes it.
    """
    started = time.monotonic()
    require_root()
    _ensure_absent(state_dir)
    network.check_free()
    topology = plan(spec)
    _prepare(state_dir, topology)
    network.build(topology)
    log.info(
        "lab_network_built", namespaces=len(topology.namespaces), **_since(started)
    )
    write_state(state_dir, _initial_state(topology, state_dir, control is not None))

    # Agents come last: their queues must exist before they start.
    running = services.workloads(topology, state_dir)
    if control is not None:
        running += services.control(control, state_dir)
    services.write_plan(state_dir, running)
    _start_supervisor(state_dir)
    wait_running(state_dir, running, ready_timeout_s)
    if control is not None:
        running += _start_agents(state_dir, topology, control, running, ready_timeout_s)
    wait_settled(state_dir, running, settle_s, ready_timeout_s)
    log.info("lab_up", subnets=len(topology.agents), **_since(started))

    return _current(state_dir)


def down(state_dir: Path = DEFAULT_STATE_DIR) -> Removed:
    """Remove every process, namespace, link and rule a lab made, and its state.

    Logs stay in ``<state dir>/logs`` until the next ``up``.
    """
    require_root()
    state = read_state(state_dir)
    supervisor = state.pids.get(SUPERVISOR) if state else None
    # The supervisor stops its own children; the sweep catches the rest.
    stopped = processes.stop([supervisor] if supervisor else [], STOP_TIMEOUT_S + 2)
    stopped += processes.stop(processes.marked(), STOP_TIMEOUT_S)
    leftovers = network.find_leftovers()
    for namespace in leftovers.namespaces:
        stopped += processes.stop(network.namespace_pids(namespace), 0.0)
    network.remove(leftovers)
    _remove_state(state_dir)
    log.info("lab_down", processes=stopped, namespaces=len(leftovers.namespaces))

    return Removed(stopped, len(leftovers.namespaces), len(leftovers.links))


def status(state_dir: Path = DEFAULT_STATE_DIR) -> Status:
    """The running lab and which of its processes live; ``LabStateError`` if none."""
    state = read_state(state_dir)
    if state is None:
        # Listing nftables needs root; without it, report what the file says.
        leftovers = network.find_leftovers() if os.geteuid() == 0 else None
        if leftovers:
            raise LabStateError(
                str(state_path(state_dir)),
                f"no lab state at {state_path(state_dir)}, but leftovers exist "
                f"({_sample(leftovers.names())}): run `segscan-lab down`",
            )
        raise LabStateError(str(state_path(state_dir)), "no lab is up")
    supervisor = state.pids.get(SUPERVISOR)
    alive = {SUPERVISOR: supervisor is not None and processes.alive(supervisor)}
    for name, service in state.services.items():
        alive[name] = service.pid is not None and processes.alive(service.pid)

    return Status(state, alive)


def _ensure_absent(state_dir: Path) -> None:
    path = state_path(state_dir)
    if path.exists():
        raise LabStateError(
            str(path), f"a lab is already up ({path}): run `segscan-lab down` first"
        )
    leftovers = network.find_leftovers()
    if leftovers:
        raise LabStateError(
            leftovers.names()[0],
            f"leftovers of a lab exist ({_sample(leftovers.names())}): "
            "run `segscan-lab down` first",
        )


def _prepare(state_dir: Path, topology: Topology) -> None:
    logs = state_dir / LOGS_DIR
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    for node in topology.agents:
        services.agent_dir(state_dir, node.subnet.name).mkdir(
            parents=True, exist_ok=True
        )
    trust.prepare(state_dir, topology)


def _initial_state(topology: Topology, state_dir: Path, control: bool) -> LabState:
    subnets = {}
    for node in topology.agents:
        assert node.management is not None
        subnets[node.subnet.name] = SubnetState(
            cidr=str(node.subnet.cidr),
            vpc=node.subnet.vpc,
            namespace=node.namespace,
            agent_ip=str(node.address.ip),
            management_ip=str(node.management.address.ip),
            queue=services.queue_name(node.subnet.name),
        )
    hosts = {
        str(node.address.ip): HostState(
            subnet=node.subnet.name,
            namespace=node.namespace,
            tcp=format_ports(node.tcp),
            udp=format_ports(node.udp),
        )
        for node in topology.workloads
    }

    return LabState(
        spec=str(Path(topology.spec.path).resolve()),
        state_dir=str(state_dir),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        region=services.REGION,
        sqs_endpoint=services.SQS_ENDPOINT if control else None,
        coordinator_url=services.COORDINATOR_URL if control else None,
        management_bridge=MANAGEMENT_BRIDGE,
        management_ip=str(MANAGEMENT_IP),
        transit_namespace=TRANSIT_NAMESPACE,
        routers={router.vpc: router.namespace for router in topology.routers},
        subnets=subnets,
        hosts=hosts,
    )


def _start_supervisor(state_dir: Path) -> None:
    argv = [sys.executable, "-m", "deploy.lab.supervisor", str(state_dir)]
    log_file = services.log_path(state_dir, SUPERVISOR)
    try:
        with log_file.open("ab") as out:
            # setsid --fork detaches it: it outlives `up` and is nobody's zombie.
            subprocess.run(
                ["setsid", "--fork", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=services.base_env(state_dir),
                cwd="/",
                check=True,
                timeout=10,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceError(
            SUPERVISOR, f"cannot start the lab supervisor: {exc}", log_file
        ) from exc


def _start_agents(
    state_dir: Path,
    topology: Topology,
    control: ControlPlane,
    running: tuple[Service, ...],
    timeout_s: float,
) -> tuple[Service, ...]:
    wait_http(state_dir, services.MOTO, f"{services.SQS_ENDPOINT}/", timeout_s)
    create_queues(state_dir, [node.subnet.name for node in topology.agents])
    wait_healthy(state_dir, services.COORDINATOR, services.COORDINATOR_URL, timeout_s)
    agents = services.agents(control, topology, state_dir)
    services.write_plan(state_dir, running + agents)
    _reload_supervisor(state_dir)
    wait_running(state_dir, agents, timeout_s)

    return agents


def _reload_supervisor(state_dir: Path) -> None:
    pid = _current(state_dir).pids[SUPERVISOR]
    os.kill(pid, signal.SIGHUP)  # reread services.json


def _current(state_dir: Path) -> LabState:
    state = read_state(state_dir)
    if state is None:
        raise ServiceError(
            SUPERVISOR,
            f"the lab's state file {state_path(state_dir)} disappeared",
            services.log_path(state_dir, SUPERVISOR),
        )

    return state


def _remove_state(state_dir: Path) -> None:
    if not state_dir.is_dir():
        return
    for child in state_dir.iterdir():
        if child.name == LOGS_DIR:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _sample(names: Sequence[str]) -> str:
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _since(started: float) -> dict[str, float]:
    return {"elapsed_s": round(time.monotonic() - started, 3)}
