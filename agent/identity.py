"""Which policy subnet this agent sits in, found through the EC2 metadata service.

One agent image serves every subnet: at start the agent asks the instance
metadata service (IMDSv2 only; the templates turn IMDSv1 off) for the subnet of
its primary network interface, and maps that AWS subnet id to the policy's
subnet name through the deployment's network map baked into the image.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp
import msgspec
import structlog

from protocol.documents import DocumentError, load_document

IMDS_URL = "http://169.254.169.254"
DEFAULT_NETWORK_MAP = Path("/etc/segscan/network.yaml")
TIMEOUT_S = 2.0
# An IMDSv2 session token may live 1 s to 6 h; this lookup needs a few seconds.
TOKEN_TTL_S = 60

_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

log = structlog.get_logger(__name__)


class AgentIdentityError(Exception):
    """This agent's subnet cannot be determined; ``subject`` is the map or the URL."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.message = message


class _NetworkMapDoc(msgspec.Struct):
    """The part of the deployment's network map the agent reads.

    The coordinator reads the same file for its control sections and rejects
    unknown keys there; the agent needs only the subnets.
    """

    version: int
    subnets: dict[str, str]


async def resolve_subnet(
    network_map: str | Path = DEFAULT_NETWORK_MAP,
    *,
    imds_url: str = IMDS_URL,
    timeout_s: float = TIMEOUT_S,
) -> str:
    """The policy name of the subnet this instance runs in.

    Raises ``AgentIdentityError`` when the map is unusable, the metadata
    service does not answer, or the subnet is not in the map.
    """
    started = time.monotonic()
    names = load_subnet_names(network_map)
    subnet_id = await lookup_subnet_id(imds_url, timeout_s=timeout_s)
    name = names.get(subnet_id)
    if name is None:
        known = ", ".join(sorted(names)) or "none"
        raise AgentIdentityError(
            str(network_map),
            f"this instance's subnet {subnet_id} is not in the network map "
            f"(known: {known})",
        )
    log.info(
        "identity_resolved",
        subnet=name,
        subnet_id=subnet_id,
        elapsed_s=round(time.monotonic() - started, 3),
    )

    return name


def load_subnet_names(path: str | Path) -> dict[str, str]:
    """The map's AWS subnet id -> policy subnet name; errors name file and line."""
    try:
        doc = load_document(path)
        raw = doc.convert(_NetworkMapDoc)
        if raw.version != 1:
            raise doc.error(f"unsupported network map version {raw.version}")
        for subnet_id, name in raw.subnets.items():
            if not _SUBNET_ID.fullmatch(subnet_id):
                raise doc.error(
                    f"{subnet_id!r} is not an AWS subnet id", "subnets", subnet_id
                )
            if not name.strip():
                raise doc.error(f"{subnet_id} has no subnet name", "subnets", subnet_id)
    except DocumentError as exc:
        where = f"{exc.path}:{exc.line}" if exc.line else exc.path
        raise AgentIdentityError(where, exc.message) from exc

    return raw.subnets


async def lookup_subnet_id(
    imds_url: str = IMDS_URL, *, timeout_s: float = TIMEOUT_S
) -> str:
    """The AWS subnet id of this instance's primary network interface (IMDSv2)."""
    base = imds_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            token = await _token(session, base)
            mac = await _metadata(session, base, "mac", token)
            if not _MAC.fullmatch(mac):
                raise AgentIdentityError(base, f"unexpected MAC address {mac!r}")
            path = f"network/interfaces/macs/{mac}/subnet-id"
            subnet_id = await _metadata(session, base, path, token)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise AgentIdentityError(
            base, f"instance metadata service unreachable: {reason}"
        ) from exc
    if not _SUBNET_ID.fullmatch(subnet_id):
        raise AgentIdentityError(base, f"unexpected subnet id {subnet_id!r}")

    return subnet_id


async def _token(session: aiohttp.ClientSession, base: str) -> str:
    headers = {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)}
    async with session.put(f"{base}/latest/api/token", headers=headers) as response:
        body = await response.text()
        if response.status != 200:
            raise AgentIdentityError(
                base,
                f"IMDSv2 session token refused (HTTP {response.status}); "
                "is the metadata service enabled for this instance?",
            )

    return body.strip()


async def _metadata(
    session: aiohttp.ClientSession, base: str, path: str, token: str
) -> str:
    url = f"{base}/latest/meta-data/{path}"
    headers = {"X-aws-ec2-metadata-token": token}
    async with session.get(url, headers=headers) as response:
        body = await response.text()
        if response.status != 200:
            raise AgentIdentityError(
                url, f"metadata request failed (HTTP {response.status})"
            )

    return body.strip()
