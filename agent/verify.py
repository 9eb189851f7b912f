"""The gate every queue message passes before the agent scans anything.

In order: size; envelope; the coordinator's key and signature over the raw
payload bytes (nothing is decoded before that); then the assignment's subnet,
issue and expiry times, lifetime, replay and the approved scope.  A message
that fails is refused with ``AssignmentError``, whose ``assignment`` is set
only when the signature held, so nothing untrusted is ever reported as fact.

Clocks: an assignment issued up to ``CLOCK_SKEW_S`` in the future, or expired
less than that ago, is still accepted; agents and coordinator keep NTP time
(``agent check`` warns past 10 s), so a minute covers drift with room to spare.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import scope as scope_guard
from agent.config import AgentConfig
from agent.errors import AssignmentError, ConfigError
from agent.queue import QueueMessage
from agent.replay import ReplayCache
from protocol import codec, envelope
from protocol.errors import ProtocolError
from protocol.messages import Assignment, Refused
from protocol.scope import Scope
from protocol.signer import Signer, open_signer
from protocol.signing import SignatureError, key_id, load_public_key

CLOCK_SKEW_S = 60.0
# The planner gives assignments an hour (coordinator/planner.py); twice that
# bounds how long a stolen or replayed one could matter and how long ids are kept.
MAX_LIFETIME_S = 7200.0
MAX_BODY_CHARS = 256 * 1024  # SQS's largest message (Amazon SQS quotas)


@dataclass
class Gate:
    """Admits the assignments this agent may run; refuses everything else."""

    subnet: str
    coordinator_key: Ed25519PublicKey
    scope: Scope
    replay: ReplayCache
    clock: Callable[[], float] = time.time

    @classmethod
    def from_config(
        cls, config: AgentConfig, clock: Callable[[], float] = time.time
    ) -> Gate:
        """The gate of ``config``: its keys, verified scope and replay cache."""
        try:
            coordinator_key = load_public_key(config.coordinator_key)
        except SignatureError as exc:
            raise ConfigError("SEGSCAN_COORDINATOR_KEY", str(exc)) from exc
        scope = scope_guard.load_approved_scope(
            config.scope, config.scope_key, config.subnet
        )
        replay = ReplayCache.load(config.state_dir, CLOCK_SKEW_S, clock)

        return cls(config.subnet, coordinator_key, scope, replay, clock)

    def admit(self, message: QueueMessage) -> Assignment:
        """The assignment in ``message``, remembered as accepted; raise
        ``AssignmentError`` saying why it is refused."""
        assignment = self._verified(message)
        subject = f"assignment {assignment.id}"
        try:
            self._check(assignment, message.message_id)
        except _Refusal as refusal:
            raise AssignmentError(
                subject, refusal.reason, refusal.detail, assignment
            ) from None
        self.replay.remember(assignment.id, message.message_id, assignment.expires_at)

        return assignment

    def _verified(self, message: QueueMessage) -> Assignment:
        """Size, envelope, key and signature, then the decoded assignment."""
        subject = f"message {message.message_id}"
        if len(message.body) > MAX_BODY_CHARS:
            raise AssignmentError(
                subject, Refused.OVERSIZED, f"{len(message.body)} characters"
            )
        keys = {key_id(self.coordinator_key): self.coordinator_key}
        try:
            signed = envelope.open_envelope(
                codec.from_text(message.body), MAX_BODY_CHARS
            )
            envelope.check(signed, envelope.Context.ASSIGNMENT, keys)
            return codec.decode(signed.payload, Assignment)
        except ProtocolError as exc:
            raise AssignmentError(subject, Refused.UNDECODABLE, str(exc)) from exc
        except envelope.UnknownKeyError as exc:
            raise AssignmentError(subject, Refused.UNKNOWN_KEY, str(exc)) from exc
        except SignatureError as exc:
            raise AssignmentError(subject, Refused.BAD_SIGNATURE, str(exc)) from exc

    def _check(self, assignment: Assignment, message_id: str) -> None:
        now = self.clock()
        if assignment.src != self.subnet:
            raise _Refusal(
                Refused.WRONG_SUBNET,
                f"addressed to {assignment.src!r}, not {self.subnet!r}",
            )
        if assignment.issued_at > now + CLOCK_SKEW_S:
            ahead = assignment.issued_at - now
            raise _Refusal(Refused.NOT_YET_VALID, f"issued {ahead:.0f} s in the future")
        if assignment.expires_at < now - CLOCK_SKEW_S:
            ago = now - assignment.expires_at
            raise _Refusal(Refused.EXPIRED, f"expired {ago:.0f} s ago")
        lifetime = assignment.expires_at - assignment.issued_at
        if lifetime > MAX_LIFETIME_S:
            raise _Refusal(
                Refused.LIFETIME,
                f"valid for {lifetime:.0f} s, over the {MAX_LIFETIME_S:.0f} s allowed",
            )
        if self.replay.replayed(assignment.id, message_id):
            raise _Refusal(Refused.REPLAYED, "already accepted in another message")
        violation = scope_guard.check(self.scope, assignment)
        if violation is not None:
            raise _Refusal(violation.reason, violation.detail)


class _Refusal(Exception):
    def __init__(self, reason: Refused, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@contextlib.asynccontextmanager
async def open_agent_signer(config: AgentConfig) -> AsyncIterator[Signer]:
    """The key this agent signs its posts with (``SEGSCAN_AGENT_KEY``)."""
    try:
        async with open_signer(config.agent_key) as signer:
            yield signer
    except SignatureError as exc:
        raise ConfigError("SEGSCAN_AGENT_KEY", str(exc)) from exc
