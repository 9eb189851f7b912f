"""Agent keys for coordinator tests: one per founding subnet, signing like agents do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.auth import AgentKeys, load_agent_keys
from protocol import codec, envelope
from protocol.envelope import Context, Signed
from protocol.messages import Message
from protocol.signing import key_id, public_pem

SUBNETS = [f"cde-{c}" for c in "abcdefghi"] + ["corp-a", "corp-b", "corp-c"]
TOKEN = "operator-token-for-tests-0123456789abcdef"
CONTEXTS = {
    "result": Context.RESULT,
    "heartbeat": Context.HEARTBEAT,
    "refusal": Context.REFUSAL,
    "assignment": Context.ASSIGNMENT,
    "sighting": Context.SIGHTING,
}


@dataclass
class Keyring:
    """A private key per subnet, and the ``<subnet>.pub`` directory of them."""

    directory: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    @classmethod
    def make(cls, directory: Path, subnets: list[str] = SUBNETS) -> Keyring:
        directory.mkdir(parents=True, exist_ok=True)
        ring = cls(directory)
        for subnet in subnets:
            key = Ed25519PrivateKey.generate()
            ring.keys[subnet] = key
            (directory / f"{subnet}.pub").write_bytes(public_pem(key.public_key()))
        return ring

    def agent_keys(self) -> AgentKeys:
        return load_agent_keys(self.directory)

    def seal(self, message: Message, subnet: str) -> bytes:
        """``message`` as the agent of ``subnet`` posts it."""
        context = CONTEXTS[type(message).__name__.lower()]
        key = self.keys[subnet]
        payload = codec.encode(message)
        signature = key.sign(envelope.signing_input(context, payload))
        signed = Signed(payload, key_id(key.public_key()), signature)
        return msgspec.msgpack.encode(signed)
