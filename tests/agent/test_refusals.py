"""Refusals end to end in the run loop: reported, signed, and nothing scanned.

A loopback listener that counts connections stands for the destination's
witness: a refused assignment must never reach it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from agent.config import AgentConfig
from agent.queue import AssignmentQueue
from agent.runner import Disposition, Runner
from agent.sender import Sender
from agent.verify import Gate, open_agent_signer
from protocol import envelope
from protocol.envelope import Context
from protocol.messages import Assignment, Refused
from protocol.signing import key_id

if TYPE_CHECKING:
    from conftest import FakeCoordinator, SqsQueue, TrustKit


class CountingListener:
    """A loopback TCP port that counts the connections it sees."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._seen, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _seen(
        self, _: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def witness() -> AsyncIterator[CountingListener]:
    listener = CountingListener()
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


@pytest.fixture
async def runner(agent_config: AgentConfig) -> AsyncIterator[Runner]:
    gate = Gate.from_config(agent_config)
    async with (
        AssignmentQueue.from_config(agent_config) as queue,
        open_agent_signer(agent_config) as signer,
        Sender(agent_config.coordinator_url, signer=signer) as sender,
    ):
        yield Runner(agent_config, queue, sender, gate, heartbeat_interval_s=60)


def _assignment(subnet: str, port: int, **fields: Any) -> Assignment:
    now = time.time()
    values: dict[str, Any] = {
        "id": "as-1",
        "run_id": "run-1",
        "src": subnet,
        "dst": "loopback",
        "targets": ("127.0.0.1/32",),
        "tcp": ((port, port),),
        "udp": (),
        "rate_pps": 1000,
        "passes": 1,
        "issued_at": now,
        "expires_at": now + 300,
    }
    return Assignment(**(values | fields))


async def _handle(runner: Runner, sqs_queue: SqsQueue, body: str) -> Disposition:
    await sqs_queue.send(body)
    disposition = await runner.run_once(wait_s=2)
    assert disposition is not None
    return disposition


async def test_an_out_of_scope_port_is_reported_and_never_probed(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    witness: CountingListener,
) -> None:
    trust_kit.approve(sqs_queue.subnet, "  - {cidr: 127.0.0.1/32, tcp: [1]}\n")
    runner.gate = Gate.from_config(runner.config)  # the newly approved scope
    body = trust_kit.sign(_assignment(sqs_queue.subnet, witness.port))

    with capture_logs() as logs:
        disposition = await _handle(runner, sqs_queue, body)

    assert disposition is Disposition.REJECTED
    assert witness.connections == 0
    [notice] = coordinator.refusals
    assert (notice.reason, notice.assignment_id, notice.run_id) == (
        Refused.PORT,
        "as-1",
        "run-1",
    )
    [result] = coordinator.results
    assert result.error == (
        f"refused: tcp/{witness.port} to 127.0.0.1/32 outside approved scope"
    )
    assert (result.findings, result.coverage.sent) == ((), 0)
    [event] = [e for e in logs if e["event"] == "assignment_rejected"]
    assert event["security_event"] is True
    assert event["assignment"] == "as-1"


async def test_an_unknown_key_is_reported_without_claiming_anything(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    witness: CountingListener,
) -> None:
    forged = trust_kit.sign(
        _assignment(sqs_queue.subnet, witness.port),
        key=Ed25519PrivateKey.generate(),
    )

    disposition = await _handle(runner, sqs_queue, forged)

    assert disposition is Disposition.REJECTED
    assert witness.connections == 0
    [notice] = coordinator.refusals
    assert notice.reason == Refused.UNKNOWN_KEY
    assert (notice.assignment_id, notice.run_id) == (None, None)
    assert coordinator.results == []
    agent_key = {key_id(trust_kit.agent.public_key()): trust_kit.agent.public_key()}
    envelope.check(coordinator.envelopes[0], Context.REFUSAL, agent_key)


async def test_a_replay_is_refused_after_the_original_ran(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    witness: CountingListener,
) -> None:
    body = trust_kit.sign(_assignment(sqs_queue.subnet, witness.port))
    first = await _handle(runner, sqs_queue, body)
    probes_of_the_original = witness.connections

    again = await _handle(runner, sqs_queue, body)  # the same bytes, re-sent

    assert (first, again) == (Disposition.DONE, Disposition.REJECTED)
    assert witness.connections == probes_of_the_original
    assert [r.reason for r in coordinator.refusals] == [Refused.REPLAYED]
    assert len(coordinator.results) == 1  # only the original's
