"""Who may talk to the coordinator: agents by their keys, operators by a token.

Agents sign every post; the coordinator knows one public key per subnet, so a
key speaks for exactly one subnet: on AWS the KMS keys whose aliases
``SEGSCAN_AGENT_KEY_ALIASES`` names (``alias/segscan-agent-<subnet>``, re-read
every few minutes), elsewhere the ``<subnet>.pub`` files of ``SEGSCAN_AGENT_KEYS``
(default: ``agent-keys`` in its state directory).  Requests that change state
on the operator API (start a run, rescan) carry the bearer token
``SEGSCAN_OPERATOR_TOKEN`` (or the file ``SEGSCAN_OPERATOR_TOKEN_FILE`` names);
without one, a token is made at first start and kept in the state directory.
Reading (health, runs, reports) needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator import keys
from coordinator.errors import UsageError
from protocol.signer import kms_public_keys, kms_region
from protocol.signing import SignatureError, key_id, load_public_key

log = structlog.get_logger(__name__)

AGENT_KEYS_DIR = "agent-keys"
AGENT_KEY_ALIASES_ENV = "SEGSCAN_AGENT_KEY_ALIASES"
SUBNET_PLACEHOLDER = "{subnet}"
# Agents stacks are deployed after the coordinator's, and a replaced key keeps
# its alias: a re-read this often picks both up without a restart.
REFRESH_S = 300.0
TOKEN_FILE = "operator-token"
MIN_TOKEN_CHARS = 32
# Agents authenticate by signature, not by token.
AGENT_PATHS = frozenset(
    {"/v1/results", "/v1/heartbeats", "/v1/refusals", "/v1/sightings"}
)
READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class AgentKey:
    """The public key the agent of ``subnet`` signs with."""

    subnet: str
    key_id: str
    public_key: Ed25519PublicKey


class AgentKeys(Mapping[str, Ed25519PublicKey]):
    """The agents' public keys, by key id; each knows its subnet."""

    def __init__(self, agent_keys: Mapping[str, AgentKey]) -> None:
        self._keys = dict(agent_keys)

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid].public_key

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def subnet(self, kid: str) -> str:
        """The subnet whose agent holds the key ``kid``."""
        return self._keys[kid].subnet

    def replace(self, other: AgentKeys) -> None:
        """Know exactly ``other``'s keys from now on (a re-read from KMS)."""
        self._keys = dict(other._keys)


def agent_keys_dir() -> Path:
    """Where the agents' public keys are: ``SEGSCAN_AGENT_KEYS`` or the default."""
    if explicit := os.environ.get("SEGSCAN_AGENT_KEYS"):
        return Path(explicit)

    return keys.state_dir() / AGENT_KEYS_DIR


def load_agent_keys(directory: Path) -> AgentKeys:
    """Every ``<subnet>.pub`` in ``directory``; raise ``UsageError`` naming a bad
    file, or when there is none (the coordinator could accept no result)."""
    found: dict[str, AgentKey] = {}
    for path in sorted(directory.glob("*.pub")):
        try:
            public = load_public_key(path)
        except SignatureError as exc:
            raise UsageError(str(path), str(exc).removeprefix(f"{path}: ")) from exc
        _add(found, path.name.removesuffix(".pub"), public, str(path))
    if not found:
        raise UsageError(
            str(directory),
            "no agent keys (<subnet>.pub) here: set SEGSCAN_AGENT_KEYS to the "
            "directory of the keys agents sign results with",
        )
    log.info("agent_keys_loaded", directory=str(directory), subnets=len(found))

    return AgentKeys(found)


def agent_key_aliases() -> dict[str, str]:
    """Subnet -> alias ARN of its agent's KMS key, from ``SEGSCAN_AGENT_KEY_ALIASES``;
    empty when unset.

    The variable holds ``;``-separated groups ``TEMPLATE=SUBNET,SUBNET,...``, one
    per account, where TEMPLATE is an alias ARN with ``{subnet}`` in it:
    ``arn:aws:kms:REGION:ACCOUNT:alias/segscan-agent-{subnet}=cde-a,cde-b``.
    Raise ``UsageError`` naming the variable when it is malformed.
    """
    raw = os.environ.get(AGENT_KEY_ALIASES_ENV, "")
    aliases: dict[str, str] = {}
    for group in filter(None, (part.strip() for part in raw.split(";"))):
        template, _, names = group.partition("=")
        alias = kms_region(template) is not None and ":alias/" in template
        if not alias or SUBNET_PLACEHOLDER not in template:
            raise UsageError(
                AGENT_KEY_ALIASES_ENV,
                f"{template!r} is not a KMS alias ARN with {SUBNET_PLACEHOLDER} in it",
            )
        for subnet in filter(None, (name.strip() for name in names.split(","))):
            if subnet in aliases:
                raise UsageError(AGENT_KEY_ALIASES_ENV, f"{subnet} is named twice")
            aliases[subnet] = template.replace(SUBNET_PLACEHOLDER, subnet)

    return aliases


async def load_kms_agent_keys(aliases: Mapping[str, str]) -> AgentKeys:
    """The public key of each subnet's KMS key (``kms:GetPublicKey`` only).

    A subnet whose key does not exist yet is logged and left out: its agents
    stack may come after the coordinator's.  Raise ``UsageError`` when KMS
    refuses or two subnets share a key.
    """
    try:
        public = await kms_public_keys(aliases.values())
    except SignatureError as exc:
        raise UsageError(AGENT_KEY_ALIASES_ENV, str(exc)) from exc
    found: dict[str, AgentKey] = {}
    for subnet, ref in sorted(aliases.items()):
        if ref in public:
            _add(found, subnet, public[ref], ref)
    missing = sorted(set(aliases) - {key.subnet for key in found.values()})
    if missing:
        log.warning("agent_keys_missing", subnets=missing)
    log.info("agent_keys_loaded", source="kms", subnets=len(found))

    return AgentKeys(found)


def refresh_agent_keys(
    app: web.Application,
    agent_keys: AgentKeys,
    aliases: Mapping[str, str],
    interval_s: float = REFRESH_S,
) -> None:
    """Re-read ``agent_keys`` from KMS every ``interval_s`` while ``app`` serves."""

    async def refresher(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_keep_fresh(agent_keys, aliases, interval_s))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(refresher)


async def _keep_fresh(
    agent_keys: AgentKeys, aliases: Mapping[str, str], interval_s: float
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            fresh = await load_kms_agent_keys(aliases)
        except UsageError as exc:
            # KMS unreachable for a moment must not forget the keys known so far.
            log.warning("agent_keys_refresh_failed", error=str(exc))
            continue
        agent_keys.replace(fresh)


def _add(
    found: dict[str, AgentKey], subnet: str, public: Ed25519PublicKey, where: str
) -> None:
    kid = key_id(public)
    if kid in found:
        raise UsageError(
            where, f"the same key as {found[kid].subnet}'s: one key per subnet"
        )
    found[kid] = AgentKey(subnet, kid, public)


def operator_token() -> str:
    """The token operators present: ``SEGSCAN_OPERATOR_TOKEN``, else the file
    ``SEGSCAN_OPERATOR_TOKEN_FILE`` names, else the one kept in the state
    directory, made on first use."""
    if token := os.environ.get("SEGSCAN_OPERATOR_TOKEN", "").strip():
        return _long_enough(token, "SEGSCAN_OPERATOR_TOKEN")
    if named := os.environ.get("SEGSCAN_OPERATOR_TOKEN_FILE", "").strip():
        try:
            token = Path(named).read_text().strip()
        except OSError as exc:
            raise UsageError("SEGSCAN_OPERATOR_TOKEN_FILE", str(exc)) from exc
        return _long_enough(token, "SEGSCAN_OPERATOR_TOKEN_FILE")
    path = keys.state_dir() / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        log.info("operator_token_generated", path=str(path))

    return path.read_text().strip()


def _long_enough(token: str, name: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise UsageError(
            name, f"the token is shorter than {MIN_TOKEN_CHARS} characters"
        )

    return token


def operator_guard(token: str) -> Middleware:
    """Middleware: a state-changing operator request needs ``Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in READ_ONLY or request.path in AGENT_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            log.warning(
                "operator_request_refused",
                security_event=True,
                method=request.method,
                path=request.path,
                peer=request.remote,
            )
            return web.json_response(
                {
                    "error": "this request needs the operator token (Authorization: "
                    "Bearer ...; SEGSCAN_OPERATOR_TOKEN)"
                },
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return guard
