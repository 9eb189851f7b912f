"""Posting signed messages to a stand-in for the coordinator on loopback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from agent.errors import CoordinatorError
from agent.sender import MSGPACK, Sender
from protocol import envelope
from protocol.envelope import Context
from protocol.messages import Coverage, Heartbeat, Refusal, Refused, Result
from protocol.signer import FileSigner

if TYPE_CHECKING:
    from conftest import FakeCoordinator, TrustKit

RESULT = Result(
    assignment_id="a-1",
    run_id="r-1",
    src="corp-a",
    dst="cde-a",
    agent="corp-a@test",
    engine="connect",
    started_at=1.0,
    finished_at=2.0,
    coverage=Coverage(planned=1, sent=1, answered=0, passes=1),
    findings=(),
)


async def test_a_result_arrives_as_msgpack_signed_by_the_agent(
    coordinator: FakeCoordinator, trust_kit: TrustKit
) -> None:
    signer = FileSigner(trust_kit.agent)
    async with Sender(coordinator.url, signer=signer) as sender:
        status = await sender.post_result(RESULT)

    assert status == "stored"
    assert coordinator.results == [RESULT]
    assert coordinator.content_types == [MSGPACK]
    [signed] = coordinator.envelopes
    keys = {signer.key_id: signer.public_key}
    assert envelope.check(signed, Context.RESULT, keys) == signer.key_id


async def test_a_refusal_notice_is_posted_signed(
    coordinator: FakeCoordinator, trust_kit: TrustKit
) -> None:
    notice = Refusal(
        agent="corp-a@test",
        subnet="corp-a",
        message_id="m-1",
        body_sha256="0" * 64,
        reason=Refused.BAD_SIGNATURE,
        detail="bad signature",
        received_at=1.0,
    )
    signer = FileSigner(trust_kit.agent)

    async with Sender(coordinator.url, signer=signer) as sender:
        await sender.post_refusal(notice)

    assert coordinator.refusals == [notice]
    envelope.check(
        coordinator.envelopes[0], Context.REFUSAL, {signer.key_id: signer.public_key}
    )


async def test_without_a_key_nothing_is_posted(coordinator: FakeCoordinator) -> None:
    async with Sender(coordinator.url) as sender:
        with pytest.raises(CoordinatorError, match="no agent key"):
            await sender.post_result(RESULT)

    assert coordinator.envelopes == []


async def test_a_refused_result_carries_the_status_and_the_reason(
    coordinator: FakeCoordinator, trust_kit: TrustKit
) -> None:
    coordinator.result_status = 409

    async with Sender(coordinator.url, signer=FileSigner(trust_kit.agent)) as sender:
        with pytest.raises(CoordinatorError) as caught:
            await sender.post_result(RESULT)

    assert caught.value.status == 409
    assert caught.value.subject == f"{coordinator.url}/v1/results"
    assert caught.value.message == "answered 409 Conflict: not today"


async def test_heartbeat_and_health(
    coordinator: FakeCoordinator, trust_kit: TrustKit
) -> None:
    heartbeat = Heartbeat(agent="corp-a@test", subnet="corp-a", sent_at=3.0)

    async with Sender(coordinator.url, signer=FileSigner(trust_kit.agent)) as sender:
        await sender.post_heartbeat(heartbeat)
        health = await sender.health()

    assert coordinator.heartbeats == [heartbeat]
    assert health.status == "ok"
    assert health.server_time == pytest.approx(time.time(), abs=5)


async def test_an_unreachable_coordinator_is_a_coordinator_error(
    trust_kit: TrustKit,
) -> None:
    async with Sender(
        "http://127.0.0.1:9", signer=FileSigner(trust_kit.agent)
    ) as sender:
        with pytest.raises(CoordinatorError, match="request failed") as caught:
            await sender.post_result(RESULT)

    assert caught.value.status is None
