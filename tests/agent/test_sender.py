"""Posting to a stand-in for the coordinator on loopback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from agent.errors import CoordinatorError
from agent.sender import MSGPACK, Sender
from protocol.messages import Coverage, Heartbeat, Result

if TYPE_CHECKING:
    from conftest import FakeCoordinator

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


async def test_a_result_arrives_as_msgpack(coordinator: FakeCoordinator) -> None:
    async with Sender(coordinator.url) as sender:
        status = await sender.post_result(RESULT)

    assert status == "stored"
    assert coordinator.results == [RESULT]
    assert coordinator.content_types == [MSGPACK]


async def test_a_refused_result_carries_the_status_and_the_reason(
    coordinator: FakeCoordinator,
) -> None:
    coordinator.result_status = 409

    async with Sender(coordinator.url) as sender:
        with pytest.raises(CoordinatorError) as caught:
            await sender.post_result(RESULT)

    assert caught.value.status == 409
    assert caught.value.subject == f"{coordinator.url}/v1/results"
    assert caught.value.message == "answered 409 Conflict: not today"


async def test_heartbeat_and_health(coordinator: FakeCoordinator) -> None:
    heartbeat = Heartbeat(agent="corp-a@test", subnet="corp-a", sent_at=3.0)

    async with Sender(coordinator.url) as sender:
        await sender.post_heartbeat(heartbeat)
        health = await sender.health()

    assert coordinator.heartbeats == [heartbeat]
    assert health.status == "ok"
    assert health.server_time == pytest.approx(time.time(), abs=5)


async def test_an_unreachable_coordinator_is_a_coordinator_error() -> None:
    async with Sender("http://127.0.0.1:9") as sender:
        with pytest.raises(CoordinatorError, match="request failed") as caught:
            await sender.post_result(RESULT)

    assert caught.value.status is None
