"""Delivery guarantees of the run loop: moto's SQS, a fake coordinator that fails.

A result survives a coordinator that is away and an agent that is killed; a
message is deleted only once its result is stored, and never scanned twice
when its result is already in.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from agent.config import AgentConfig
from agent.queue import AssignmentQueue
from agent.runner import Disposition, Runner
from agent.sender import Sender
from agent.verify import Gate, open_agent_signer
from protocol.messages import Assignment

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import FakeCoordinator, Listeners, SqsQueue, TrustKit


def _body(kit: TrustKit, subnet: str, port: int, chunk: str = "as-1") -> str:
    now = time.time()
    return kit.sign(
        Assignment(
            id=chunk,
            run_id="run-1",
            src=subnet,
            dst="loopback",
            targets=("127.0.0.1/32",),
            tcp=((port, port),),
            udp=(),
            rate_pps=2000,
            passes=1,
            issued_at=now,
            expires_at=now + 300,
        )
    )


@pytest.fixture
async def make_runner(
    agent_config: AgentConfig,
) -> AsyncIterator[Any]:
    """Runners over one agent disk: a second one is the agent restarted."""
    gate = Gate.from_config(agent_config)
    async with (
        AssignmentQueue.from_config(agent_config) as queue,
        open_agent_signer(agent_config) as signer,
        Sender(agent_config.coordinator_url, signer=signer) as sender,
    ):

        def make() -> Runner:
            return Runner(agent_config, queue, sender, gate, heartbeat_interval_s=0.05)

        yield make


async def _until(condition: Any, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (SQS has no change notification) until it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition never held")


async def test_a_result_the_coordinator_did_not_take_is_resent_until_it_does(
    make_runner: Any,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
) -> None:
    port = await listeners.open_tcp("127.0.0.1")
    coordinator.result_status = 503
    await sqs_queue.send(_body(trust_kit, sqs_queue.subnet, port))
    runner = make_runner()

    first = await runner.run_once(wait_s=2)
    held = (await sqs_queue.counts(), runner.spool.pending())
    coordinator.result_status = 200
    loop = asyncio.create_task(runner.delivery.run())
    try:
        await asyncio.wait_for(coordinator.got_result.wait(), timeout=10)
        await _until(lambda: _counts_are(sqs_queue, (0, 0)))
    finally:
        loop.cancel()

    assert first is Disposition.UNDELIVERED
    assert held == ((0, 1), ["as-1"])
    assert [r.assignment_id for r in coordinator.results] == ["as-1"]
    assert runner.spool.pending() == []
    assert runner.spool.acked("as-1")


async def test_a_result_refused_for_good_is_set_aside_and_its_message_deleted(
    make_runner: Any,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
) -> None:
    """404: the coordinator does not know the assignment; re-sending is futile."""
    port = await listeners.open_tcp("127.0.0.1")
    coordinator.result_status = 404
    await sqs_queue.send(_body(trust_kit, sqs_queue.subnet, port))
    runner = make_runner()

    disposition = await runner.run_once(wait_s=2)

    assert disposition is Disposition.UNDELIVERED
    assert runner.spool.pending() == []
    assert await sqs_queue.counts() == (0, 0)


async def test_an_agent_restarted_after_a_kill_delivers_its_spool_without_rescanning(
    make_runner: Any,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scanned, spooled, killed while the coordinator was down: the restarted
    agent holds the same message again and sends the same result."""
    port = await listeners.open_tcp("127.0.0.1")
    coordinator.result_status = 503
    await sqs_queue.send(_body(trust_kit, sqs_queue.subnet, port))
    killed = make_runner()
    await killed.run_once(wait_s=2)
    await killed.leases.close()  # SIGKILL: no release, the journal stays
    spooled = killed.spool.load("as-1")
    scans: list[object] = []
    monkeypatch.setattr("agent.runner.choose_engine", scans.append)
    coordinator.result_status = 200

    restarted = make_runner()
    task = asyncio.create_task(restarted.run())
    try:
        await asyncio.wait_for(coordinator.got_result.wait(), timeout=10)
        await _until(lambda: _counts_are(sqs_queue, (0, 0)))
    finally:
        task.cancel()
        await asyncio.wait({task})

    assert coordinator.results == [spooled]
    assert scans == []


async def test_a_message_redelivered_after_its_result_was_stored_is_not_rescanned(
    make_runner: Any,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored, then killed before the delete: SQS hands the message out again."""
    port = await listeners.open_tcp("127.0.0.1")
    await sqs_queue.send(_body(trust_kit, sqs_queue.subnet, port))
    runner = make_runner()
    message = await runner.queue.receive(wait_s=2)
    assert message is not None
    runner.spool.ack("as-1", time.time() + 300)
    scans: list[object] = []
    monkeypatch.setattr("agent.runner.choose_engine", scans.append)

    disposition = await runner.handle(message)

    assert disposition is Disposition.DONE
    assert scans == []
    assert coordinator.results == []
    assert await sqs_queue.counts() == (0, 0)


async def _counts_are(sqs_queue: SqsQueue, expected: tuple[int, int]) -> bool:
    return await sqs_queue.counts() == expected
