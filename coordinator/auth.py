"""Who may talk to the coordinator: agents by their keys, operators by a token.

Agents sign every post; the coordinator knows one public key per subnet, the
``<subnet>.pub`` files of ``SEGSCAN_AGENT_KEYS`` (default: ``agent-keys`` in its
state directory), so a key speaks for exactly one subnet.  Requests that
change state on the operator API (start a run, rescan) carry the bearer token
``SEGSCAN_OPERATOR_TOKEN`` (or the file ``SEGSCAN_OPERATOR_TOKEN_FILE`` names);
without one, a token is made at first start and kept in the state directory.
Reading (health, runs, reports) needs none.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator import keys
from coordinator.errors import UsageError
from protocol.signing import SignatureError, key_id, load_public_key

log = structlog.get_logger(__name__)

AGENT_KEYS_DIR = "agent-keys"
TOKEN_FILE = "operator-token"
MIN_TOKEN_CHARS = 32
# Agents authenticate by signature, not by token.
AGENT_PATHS = frozenset({"/v1/results", "/v1/heartbeats", "/v1/refusals"})
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
        kid = key_id(public)
        if kid in found:
            raise UsageError(
                str(path), f"the same key as {found[kid].subnet}.pub: one per subnet"
            )
        found[kid] = AgentKey(path.name.removesuffix(".pub"), kid, public)
    if not found:
        raise UsageError(
            str(directory),
            "no agent keys (<subnet>.pub) here: set SEGSCAN_AGENT_KEYS to the "
            "directory of the keys agents sign results with",
        )
    log.info("agent_keys_loaded", directory=str(directory), subnets=len(found))

    return AgentKeys(found)


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
