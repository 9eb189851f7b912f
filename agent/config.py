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

        return cls(
            subnet=subnet,
            agent_id=env.get("SEGSCAN_AGENT_ID") or f"{subnet}@{socket.gethostname()}",
            queue_name=queue_name,
            sqs_endpoint=_url(env, "SEGSCAN_SQS_ENDPOINT") or None,
            region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            coordinator_url=_url(env, "SEGSCAN_COORDINATOR_URL", required=True),
            engine=_engine(env),
            state_dir=Path(env.get("SEGSCAN_STATE_DIR") or DEFAULT_STATE_DIR),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "not set; the agent needs it")

    return value


def _url(env: Mapping[str, str], name: str, *, required: bool = False) -> str:
    value = _required(env, name) if required else env.get(name, "").strip()
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.netloc):
        raise ConfigError(name, f"{value!r} is not an http:// or https:// URL")

    return value.rstrip("/")


def _engine(env: Mapping[str, str]) -> ScanKind:
    value = env.get("SEGSCAN_ENGINE") or ScanKind.AUTO
    try:
        return ScanKind(value)
    except ValueError:
        choices = "|".join(ScanKind)
        raise ConfigError("SEGSCAN_ENGINE", f"{value!r} is not {choices}") from None
