"""The agent's settings, read once from its environment (SEGSCAN_* variables)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import ConfigError
from protocol.messages import ScanKind

DEFAULT_QUEUE_PREFIX = "segscan-"
DEFAULT_REGION = "us-east-1"
DEFAULT_STATE_DIR = "/var/lib/segscan-agent"
DEFAULT_LEASE_S = 120
# A refused message comes back this much later, not at the queue's default:
# one security event per message every few minutes until redrive takes it.
DEFAULT_REJECTED_HIDE_S = 300
MAX_VISIBILITY_S = 43_200  # SQS ChangeMessageVisibility's upper bound
# Where the agent image keeps what it trusts (deploy/aws/README.md, step 4).
DEFAULT_COORDINATOR_KEY = "/etc/segscan/keys/assignments.pem"
DEFAULT_SCOPE_KEY = "/etc/segscan/keys/scopes.pem"
DEFAULT_SCOPE = "/etc/segscan/scope"
AGENT_KEY_FILE = "agent-key.pem"  # in the state directory, unless set
# Stands for the agent's subnet in SEGSCAN_AGENT_KEY, so that one image names
# each subnet's own key: alias/segscan-agent-{subnet} (deploy/aws/agents.yaml).
SUBNET_PLACEHOLDER = "{subnet}"

# SQS queue names: 1-80 characters, alphanumerics, hyphens and underscores
# (Amazon SQS Developer Guide, "Quotas related to queues").
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


@dataclass(frozen=True)
class AgentConfig:
    """Who this agent is and where it finds its queue and its coordinator."""

    subnet: str
    agent_id: str
    queue_name: str
    sqs_endpoint: str | None
    region: str
    coordinator_url: str
    engine: ScanKind
    state_dir: Path  # where results wait until the coordinator accepts them
    coordinator_key: Path = Path(DEFAULT_COORDINATOR_KEY)  # verifies assignments
    scope: Path = Path(DEFAULT_SCOPE)  # a scope file, or a directory of them
    scope_key: Path = Path(DEFAULT_SCOPE_KEY)  # verifies the scope
    agent_key: str = ""  # signs what it posts: a PEM path or a KMS key or alias
    allow_root: bool = False
    # Delivery (agent/lease.py): how long a held message stays hidden per
    # renewal, and how long a refused one hides before its next receive.
    lease_s: int = DEFAULT_LEASE_S
    rejected_hide_s: int = DEFAULT_REJECTED_HIDE_S
    # Watch this host's own address for other agents' probes (agent/witness.py).
    witness: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        """Read the settings; raise ``ConfigError`` naming a missing or bad one."""
        env = os.environ if env is None else env
        subnet = _required(env, "SEGSCAN_SUBNET")
        queue_name = env.get("SEGSCAN_QUEUE_PREFIX", DEFAULT_QUEUE_PREFIX) + subnet
        if not _QUEUE_NAME.fullmatch(queue_name):
            raise ConfigError(
                "SEGSCAN_SUBNET",
                f"queue name {queue_name!r} is not a valid SQS name "
                "(letters, digits, '-' and '_', at most 80)",
            )

        state_dir = Path(env.get("SEGSCAN_STATE_DIR") or DEFAULT_STATE_DIR)

        return cls(
            subnet=subnet,
            agent_id=env.get("SEGSCAN_AGENT_ID") or f"{subnet}@{socket.gethostname()}",
            queue_name=queue_name,
            sqs_endpoint=_url(env, "SEGSCAN_SQS_ENDPOINT") or None,
            region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            coordinator_url=_url(env, "SEGSCAN_COORDINATOR_URL", required=True),
            engine=_engine(env),
            state_dir=state_dir,
            coordinator_key=_path(
                env, "SEGSCAN_COORDINATOR_KEY", DEFAULT_COORDINATOR_KEY
            ),
            scope=_path(env, "SEGSCAN_SCOPE", DEFAULT_SCOPE),
            scope_key=_path(env, "SEGSCAN_SCOPE_KEY", DEFAULT_SCOPE_KEY),
            agent_key=_agent_key(env, subnet, state_dir),
            allow_root=_flag(env, "SEGSCAN_ALLOW_ROOT"),
            lease_s=_seconds(env, "SEGSCAN_LEASE_S", DEFAULT_LEASE_S, 30),
            rejected_hide_s=_seconds(
                env, "SEGSCAN_REJECTED_HIDE_S", DEFAULT_REJECTED_HIDE_S, 0
            ),
            witness=_flag(env, "SEGSCAN_WITNESS", default=True),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "not set; the agent needs it")

    return value


def _agent_key(env: Mapping[str, str], subnet: str, state_dir: Path) -> str:
    """The key reference, with ``{subnet}`` replaced by this agent's subnet."""
    ref = env.get("SEGSCAN_AGENT_KEY", "").strip() or str(state_dir / AGENT_KEY_FILE)

    return ref.replace(SUBNET_PLACEHOLDER, subnet)


def _url(env: Mapping[str, str], name: str, *, required: bool = False) -> str:
    value = _required(env, name) if required else env.get(name, "").strip()
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ConfigError(name, f"{value!r} is not an http:// or https:// URL")

    return value.rstrip("/")


def _path(env: Mapping[str, str], name: str, default: str) -> Path:
    return Path(env.get(name, "").strip() or default)


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ConfigError(name, f"{value!r} is not 1/0, true/false or yes/no")

    return default if value == "" else value in ("1", "true", "yes")


def _seconds(env: Mapping[str, str], name: str, default: int, least: int) -> int:
    """A whole number of seconds within SQS's visibility limit (12 hours)."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not least <= int(value) <= MAX_VISIBILITY_S:
        raise ConfigError(
            name, f"{value!r} is not a number of seconds from {least} to 43200"
        )

    return int(value)


def _engine(env: Mapping[str, str]) -> ScanKind:
    value = env.get("SEGSCAN_ENGINE") or ScanKind.AUTO
    try:
        return ScanKind(value)
    except ValueError:
        choices = "|".join(ScanKind)
        raise ConfigError("SEGSCAN_ENGINE", f"{value!r} is not {choices}") from None
