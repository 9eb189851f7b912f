"""The run loop end to end: moto's SQS, a fake coordinator, loopback listeners."""

from __future__ import annotations

import asyncio
import time
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from agent import engines
from agent.config import AgentConfig
from agent.queue import AssignmentQueue
from agent.runner import Disposition, Runner, expand_targets
from agent.sender import Sender
from agent.verify import Gate, open_agent_signer
from protocol import codec
from protocol.messages import Assignment, Finding, PortState, Proto, Reason, ScanKind

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import FakeCoordinator, Listeners, SqsQueue, TrustKit


def assignment_for(
    kit: TrustKit, subnet: str, tcp: tuple[tuple[int, int], ...], **fields: Any
) -> str:
    """A signed queue body: scan 127.0.0.1 from ``subnet``."""
    now = time.time()
    values: dict[str, Any] = {
        "id": "as-1",
        "run_id": "run-1",
        "src": subnet,
        "dst": "loopback",
        "targets": ("127.0.0.1/32",),
        "tcp": tcp,
        "udp": (),
        "rate_pps": 2000,
        "passes": 1,
        "issued_at": now,
        "expires_at": now + 300,
        **fields,
    }
    return kit.sign(Assignment(**values))


@pytest.fixture
async def runner(agent_config: AgentConfig) -> AsyncIterator[Runner]:
    gate = Gate.from_config(agent_config)
    async with (
        AssignmentQueue.from_config(agent_config) as queue,
        open_agent_signer(agent_config) as signer,
        Sender(agent_config.coordinator_url, signer=signer) as sender,
    ):
        yield Runner(agent_config, queue, sender, gate, heartbeat_interval_s=0.05)


async def test_an_assignment_is_scanned_reported_and_deleted(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
) -> None:
    open_port = await listeners.open_tcp("127.0.0.1")
    closed = listeners.closed_tcp("127.0.0.1", count=3)
    tcp = ((open_port, open_port), (closed, closed + 2))
    await sqs_queue.send(assignment_for(trust_kit, sqs_queue.subnet, tcp))

    with capture_logs() as logs:
        disposition = await runner.run_once(wait_s=2)

    assert disposition is Disposition.DONE
    [result] = coordinator.results
    assert (result.assignment_id, result.run_id, result.src) == (
        "as-1",
        "run-1",
        sqs_queue.subnet,
    )
    assert (result.agent, result.engine, result.error) == (
        runner.config.agent_id,
        "connect",
        None,
    )
    assert set(result.findings) == {
        Finding("127.0.0.1", Proto.TCP, tcp[:1], PortState.OPEN, Reason.CONNECTED),
        Finding("127.0.0.1", Proto.TCP, tcp[1:], PortState.CLOSED, Reason.REFUSED),
    }
    assert (result.coverage.planned, result.coverage.answered) == (4, 4)
    assert result.started_at <= result.finished_at
    assert await sqs_queue.counts() == (0, 0)
    [line] = [entry for entry in logs if entry["event"] == "assignment_done"]
    assert line["assignment"] == "as-1"
    assert line["pair"] == f"{sqs_queue.subnet}->loopback"
    assert line["run"] == "run-1"
    assert line["elapsed_s"] >= 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("expired", "expired"),
        ("wrong-subnet", "wrong-subnet"),
        ("not base64 at all!", "undecodable"),
        (codec.to_text(b"\x93\x01\x02\x03"), "undecodable"),
    ],
)
async def test_an_invalid_message_is_not_scanned_and_left_on_the_queue(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    monkeypatch: pytest.MonkeyPatch,
    body: str,
    reason: str,
) -> None:
    scanned: list[object] = []
    monkeypatch.setattr("agent.runner.choose_engine", scanned.append)
    if body == "expired":
        body = assignment_for(
            trust_kit, sqs_queue.subnet, ((1, 1),), expires_at=time.time() - 600
        )
    elif body == "wrong-subnet":
        body = assignment_for(trust_kit, "some-other-subnet", ((1, 1),))
    await sqs_queue.send(body)

    with capture_logs() as logs:
        disposition = await runner.run_once(wait_s=2)

    assert disposition is Disposition.REJECTED
    assert scanned == []
    assert all(r.findings == () for r in coordinator.results)
    assert all(str(r.error).startswith("refused: ") for r in coordinator.results)
    assert [r.reason for r in coordinator.refusals] == [reason]
    assert await sqs_queue.counts() == (0, 1)  # in flight, not deleted
    [line] = [entry for entry in logs if entry["event"] == "assignment_rejected"]
    assert (line["reason"], line["security_event"]) == (reason, True)


async def test_a_result_the_coordinator_refuses_keeps_the_message(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
) -> None:
    coordinator.result_status = 500
    await sqs_queue.send(assignment_for(trust_kit, sqs_queue.subnet, ((1, 1),)))

    disposition = await runner.run_once(wait_s=2)

    assert disposition is Disposition.UNDELIVERED
    assert await sqs_queue.counts() == (0, 1)


async def test_an_engine_failure_is_reported_as_an_error_result(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engines.syn, "raw_sockets_available", lambda: False)
    body = assignment_for(trust_kit, sqs_queue.subnet, ((1, 1),), kind=ScanKind.SYN)
    await sqs_queue.send(body)

    disposition = await runner.run_once(wait_s=2)

    assert disposition is Disposition.DONE
    [result] = coordinator.results
    assert result.error == "syn: the SYN engine needs root or CAP_NET_RAW"
    assert result.findings == ()
    assert result.coverage.planned == 1
    assert await sqs_queue.counts() == (0, 0)


async def test_run_serves_messages_and_heartbeats_until_cancelled(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
) -> None:
    port = await listeners.open_tcp("127.0.0.1")
    await sqs_queue.send(assignment_for(trust_kit, sqs_queue.subnet, ((port, port),)))

    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(coordinator.got_result.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [r.assignment_id for r in coordinator.results] == ["as-1"]
    assert coordinator.heartbeats
    assert {h.subnet for h in coordinator.heartbeats} == {sqs_queue.subnet}


@pytest.mark.parametrize(
    ("cidrs", "expected"),
    [
        (["127.0.0.0/30"], ["127.0.0.1", "127.0.0.2"]),
        (["127.0.0.0/31"], ["127.0.0.0", "127.0.0.1"]),
        (["127.0.0.7/32", "127.0.0.7"], ["127.0.0.7"]),
        (["127.0.0.4/30", "127.0.0.5"], ["127.0.0.5", "127.0.0.6"]),
    ],
)
def test_targets_are_host_addresses_once_each(
    cidrs: list[str], expected: list[str]
) -> None:
    assert expand_targets(cidrs) == tuple(IPv4Address(ip) for ip in expected)


@pytest.mark.parametrize("cidr", ["::1/128", "127.0.0.300", "10.0.0.0/8"])
def test_bad_or_huge_targets_are_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match=r"IPv4|addresses"):
        expand_targets([cidr])


async def test_stopping_mid_scan_hands_the_message_back_unreported(
    runner: Runner,
    sqs_queue: SqsQueue,
    trust_kit: TrustKit,
    coordinator: FakeCoordinator,
    listeners: Listeners,
) -> None:
    silent = listeners.filtered_tcp("127.0.0.1")  # holds the scan for its 1 s timeout
    await sqs_queue.send(
        assignment_for(trust_kit, sqs_queue.subnet, ((silent, silent),))
    )

    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(10):
        while not any(h.assignment_id == "as-1" for h in coordinator.heartbeats):
            await coordinator.got_heartbeat.wait()
            coordinator.got_heartbeat.clear()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert coordinator.results == []
    assert await sqs_queue.counts() == (1, 0)
