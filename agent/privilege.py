"""Least privilege: the agent needs raw sockets (CAP_NET_RAW), never root.

An agent lives inside the cardholder data environment (PCI DSS 7.2: access
limited to what the job needs).  ``agent run`` refuses to start as root unless
told to (``--allow-root`` or ``SEGSCAN_ALLOW_ROOT=1``), and logs the
capabilities it runs with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.errors import ConfigError

log = structlog.get_logger(__name__)

# Bit numbers from linux/capability.h.
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13


@dataclass(frozen=True)
class Privileges:
    """Who the process runs as and which network capabilities it holds."""

    uid: int
    net_raw: bool
    net_admin: bool

    @property
    def root(self) -> bool:
        return self.uid == 0


def current(status: Path = Path("/proc/self/status")) -> Privileges:
    """The privileges of this process, from its effective capability set."""
    effective = 0
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                effective = int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        effective = 0

    return Privileges(
        uid=os.geteuid(),
        net_raw=bool(effective >> CAP_NET_RAW & 1),
        net_admin=bool(effective >> CAP_NET_ADMIN & 1),
    )


def check(allow_root: bool, privileges: Privileges | None = None) -> Privileges:
    """Refuse root unless ``allow_root``; log what the agent runs with."""
    privileges = privileges or current()
    if privileges.root and not allow_root:
        raise ConfigError(
            "SEGSCAN_ALLOW_ROOT",
            "refusing to run as root: the agent needs only CAP_NET_RAW; run it as "
            "an unprivileged user granted that capability (as "
            "deploy/aws/segscan-agent.service does), or pass --allow-root",
        )
    log_at = log.warning if privileges.root else log.info
    log_at(
        "agent_privileges",
        uid=privileges.uid,
        root=privileges.root,
        net_raw=privileges.net_raw,
        net_admin=privileges.net_admin,
    )

    return privileges
