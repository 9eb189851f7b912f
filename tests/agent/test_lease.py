"""Leases on moto's SQS: held while open, deleted when stored, restored after a kill."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.lease import Leases
from agent.queue import AssignmentQueue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import SqsQueue

LEASE_S = 60


def _journal(directory: Path) -> list[str]:
    return [path.name for path in directory.iterdir()]


@pytest.fixture
async def queue(
    sqs_queue: SqsQueue, moto_endpoint: str
) -> AsyncIterator[AssignmentQueue]:
    async with AssignmentQueue(sqs_queue.name, moto_endpoint, "us-east-1") as opened:
        yield opened


async def _take(queue: AssignmentQueue, sqs_queue: SqsQueue) -> object:
    await sqs_queue.send("body")
    message = await queue.receive(wait_s=2)
    assert message is not None

    return message


async def test_a_held_message_stays_hidden_and_is_deleted_when_settled(
    queue: AssignmentQueue, sqs_queue: SqsQueue, tmp_path: Path
) -> None:
    leases = Leases(queue, tmp_path, LEASE_S)
    message = await _take(queue, sqs_queue)

    await leases.hold(message, "a1", time.time() + 300)  # type: ignore[arg-type]
    held = (await sqs_queue.counts(), leases.held, len(_journal(tmp_path)))
    await leases.settle("a1")

    assert held == ((0, 1), 1, 1)
    assert await sqs_queue.counts() == (0, 0)
    assert (leases.held, _journal(tmp_path)) == (0, [])


async def test_a_released_message_is_back_on_the_queue_at_once(
    queue: AssignmentQueue, sqs_queue: SqsQueue, tmp_path: Path
) -> None:
    leases = Leases(queue, tmp_path, LEASE_S)
    message = await _take(queue, sqs_queue)
    await leases.hold(message, "a1", time.time() + 300)  # type: ignore[arg-type]

    await leases.release("a1")

    assert await sqs_queue.counts() == (1, 0)
    assert _journal(tmp_path) == []


async def test_a_restarted_agent_hands_back_unfinished_work_and_keeps_spooled(
    queue: AssignmentQueue, sqs_queue: SqsQueue, tmp_path: Path
) -> None:
    """What a killed process held: scanned-and-spooled stays held, the rest
    comes back to the queue in seconds, not when its visibility lapses."""
    before = Leases(queue, tmp_path, LEASE_S)
    first = await _take(queue, sqs_queue)
    second = await _take(queue, sqs_queue)
    await before.hold(first, "spooled", time.time() + 300)  # type: ignore[arg-type]
    await before.hold(second, "mid-scan", time.time() + 300)  # type: ignore[arg-type]
    await before.close()  # the process dies; its journal stays

    after = Leases(queue, tmp_path, LEASE_S)
    restored = await after.restore(lambda assignment: assignment == "spooled")

    assert restored == (1, 1)
    assert await sqs_queue.counts() == (1, 1)
    assert after.held == 1
    await after.settle("spooled")
    assert await sqs_queue.counts() == (1, 0)


async def test_a_journal_entry_whose_message_is_gone_is_dropped(
    queue: AssignmentQueue, sqs_queue: SqsQueue, tmp_path: Path
) -> None:
    before = Leases(queue, tmp_path, LEASE_S)
    message = await _take(queue, sqs_queue)
    await before.hold(message, "a1", time.time() + 300)  # type: ignore[arg-type]
    await before.close()
    await queue.delete(message)  # type: ignore[arg-type]

    after = Leases(queue, tmp_path, LEASE_S)
    restored = await after.restore(lambda assignment: True)

    assert restored == (0, 1)
    assert after.held == 0
    assert _journal(tmp_path) == []
