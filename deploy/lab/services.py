"""The lab's processes: what runs where, with which environment and log.

``up`` writes the plan to ``<state dir>/services.json``; the supervisor reads
it.  Every process gets a clean environment (like a systemd unit): the lab's
endpoints, dummy AWS credentials, no proxy settings and no user AWS config, plus
``SEGSCAN_LAB`` so ``down`` can find lab processes even without a state file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec

from deploy.lab import trust
from deploy.lab.state import LOGS_DIR, write_atomic
from deploy.lab.topology import (
    COORDINATOR_PORT,
    MANAGEMENT_IP,
    SQS_PORT,
    Node,
    Topology,
)
from protocol.ports import format_ports

SERVICES_FILE = "services.json"
MARKER = "SEGSCAN_LAB"
REGION = "us-east-1"
AWS_DUMMY_KEY = "segscan-lab"
QUEUE_PREFIX = "segscan-"
SQS_ENDPOINT = f"http://{MANAGEMENT_IP}:{SQS_PORT}"
COORDINATOR_URL = f"http://{MANAGEMENT_IP}:{COORDINATOR_PORT}"
MOTO = "moto"
REJECTED_HIDE_S = 2
COORDINATOR = "coordinator"

_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Service(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One supervised process; ``subnet`` is set for a subnet's agent."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    log: str
    netns: str | None = None
    subnet: str | None = None


class ServicePlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the supervisor should keep running."""

    services: tuple[Service, ...]


@dataclass(frozen=True)
class ControlPlane:
    """The commands of the lab's SQS endpoint, coordinator and agents.

    Tests swap in stand-ins; the commands must serve the same addresses.
    """

    moto: tuple[str, ...]
    coordinator: tuple[str, ...]
    agent: tuple[str, ...]

    @classmethod
    def default(cls, state_dir: Path) -> ControlPlane:
        """moto's server mode, ``coordinator serve`` and ``agent run``."""
        scripts = Path(sys.executable).parent
        database = f"sqlite+aiosqlite:///{state_dir / 'coordinator.db'}"
        listen = f"{MANAGEMENT_IP}:{COORDINATOR_PORT}"
        moto = ("-m", "moto.server", "-H", str(MANAGEMENT_IP), "-p", str(SQS_PORT))
        serve = ("serve", "--listen", listen, "--db", database)

        return cls(
            moto=(sys.executable, *moto),
            coordinator=(str(scripts / "coordinator"), *serve),
            agent=(str(scripts / "agent"), "run"),
        )


def services_path(state_dir: Path) -> Path:
    """Where the supervisor finds its plan."""
    return state_dir / SERVICES_FILE


def write_plan(state_dir: Path, services: tuple[Service, ...]) -> None:
    """Hand ``services`` to the supervisor (it rereads the plan on SIGHUP)."""
    write_atomic(services_path(state_dir), msgspec.json.encode(ServicePlan(services)))


def read_plan(state_dir: Path) -> ServicePlan:
    """The plan ``up`` wrote last."""
    return msgspec.json.decode(services_path(state_dir).read_bytes(), type=ServicePlan)


def log_path(state_dir: Path, name: str) -> Path:
    """Where the output of process ``name`` goes."""
    return state_dir / LOGS_DIR / f"{name}.log"


def queue_name(subnet: str) -> str:
    """The SQS queue the agent of ``subnet`` reads its assignments from."""
    return f"{QUEUE_PREFIX}{subnet}"


def base_env(state_dir: Path) -> dict[str, str]:
    """The environment every lab process starts from."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{_SYSTEM_PATH}",
        # Keeps the user's ~/.aws out of the lab.
        "HOME": str(state_dir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        MARKER: str(state_dir),
    }


def workloads(topology: Topology, state_dir: Path) -> tuple[Service, ...]:
    """One listener per workload host, inside the host's namespace."""
    return tuple(_workload(node, state_dir) for node in topology.workloads)


def control(plane: ControlPlane, state_dir: Path) -> tuple[Service, ...]:
    """The SQS endpoint and the coordinator, in the root namespace."""
    return (
        Service(MOTO, plane.moto, base_env(state_dir), _log(state_dir, MOTO)),
        Service(
            COORDINATOR,
            plane.coordinator,
            {**base_env(state_dir), **_aws_env(), **trust.coordinator_env(state_dir)},
            _log(state_dir, COORDINATOR),
        ),
    )


def agents(
    plane: ControlPlane, topology: Topology, state_dir: Path
) -> tuple[Service, ...]:
    """One agent per subnet, inside the subnet's agent namespace."""
    return tuple(
        _agent(plane, node, state_dir, index)
        for index, node in enumerate(topology.agents)
    )


def _workload(node: Node, state_dir: Path) -> Service:
    argv = [sys.executable, "-m", "deploy.lab.workload"]
    if node.tcp:
        argv += ["--tcp", format_ports(node.tcp)]
    if node.udp:
        argv += ["--udp", format_ports(node.udp)]

    return Service(
        node.name,
        tuple(argv),
        base_env(state_dir),
        _log(state_dir, node.name),
        node.namespace,
    )


def _agent(plane: ControlPlane, node: Node, state_dir: Path, index: int) -> Service:
    subnet = node.subnet.name
    env = {
        **base_env(state_dir),
        **_aws_env(),
        **trust.agent_env(state_dir, subnet),
        "SEGSCAN_SUBNET": subnet,
        "SEGSCAN_STATE_DIR": str(agent_dir(state_dir, subnet)),
        # The lab's clock is minutes: a refused message reaches the
        # dead-letter queue (queues.MAX_RECEIVES) in seconds, not half an hour.
        "SEGSCAN_REJECTED_HIDE_S": str(REJECTED_HIDE_S),
    }
    argv = trust.agent_command(plane.agent, index)

    return Service(
        node.name, argv, env, _log(state_dir, node.name), node.namespace, subnet
    )


def agent_dir(state_dir: Path, subnet: str) -> Path:
    """The disk of the agent of ``subnet`` (``SEGSCAN_STATE_DIR``)."""
    return state_dir / "agents" / subnet


def _aws_env() -> dict[str, str]:
    return {
        "SEGSCAN_COORDINATOR_URL": COORDINATOR_URL,
        "SEGSCAN_SQS_ENDPOINT": SQS_ENDPOINT,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": AWS_DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_DUMMY_KEY,
        # botocore would otherwise probe 169.254.169.254, outside the lab.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _log(state_dir: Path, name: str) -> str:
    return str(log_path(state_dir, name))
