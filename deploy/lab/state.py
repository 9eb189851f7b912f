"""The running lab's state file, ``<state dir>/state.json``.

``segscan-lab up`` writes it once the network stands; from then on the
supervisor is its only writer and keeps the pids current.  Other commands (the
coordinator CLI, ``segscan-lab status``) only read it.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

import msgspec

DEFAULT_STATE_DIR = Path("/run/segscan-lab")
STATE_FILE = "state.json"
LOGS_DIR = "logs"


class ServiceStatus(StrEnum):
    """Where a supervised process is in its life."""

    RUNNING = "running"
    # Exited; the supervisor starts it again after a delay.
    RESTARTING = "restarting"
    STOPPED = "stopped"


class ServiceState(msgspec.Struct, frozen=True, kw_only=True):
    """One supervised process as the supervisor last saw it."""

    status: ServiceStatus
    pid: int | None
    starts: int
    last_exit: int | None
    log: str
    netns: str | None


class SubnetState(msgspec.Struct, frozen=True, kw_only=True):
    """A subnet, its agent's namespace and addresses, and the agent's pid."""

    cidr: str
    vpc: str
    namespace: str
    agent_ip: str
    management_ip: str
    queue: str
    agent_pid: int | None = None


class HostState(msgspec.Struct, frozen=True, kw_only=True):
    """A workload host and the ports it listens on."""

    subnet: str
    namespace: str
    tcp: str
    udp: str


class LabState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a caller needs to find and use a running lab."""

    version: int = 1
    spec: str
    state_dir: str
    started_at: str
    region: str
    # None when the lab runs its network only (no SQS, coordinator or agents).
    sqs_endpoint: str | None
    coordinator_url: str | None
    management_bridge: str
    management_ip: str
    transit_namespace: str
    routers: dict[str, str]
    subnets: dict[str, SubnetState]
    hosts: dict[str, HostState]
    pids: dict[str, int] = {}
    services: dict[str, ServiceState] = {}


def state_path(state_dir: Path) -> Path:
    """Where the state file of a lab kept in ``state_dir`` lives."""
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> LabState | None:
    """The lab's state, or None when there is no (readable) state file."""
    try:
        return msgspec.json.decode(state_path(state_dir).read_bytes(), type=LabState)
    except (OSError, msgspec.DecodeError):
        return None


def write_state(state_dir: Path, state: LabState) -> None:
    """Replace the state file in one step, so a reader never sees half of it."""
    write_atomic(state_path(state_dir), msgspec.json.format(msgspec.json.encode(state)))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)
