"""The SQS consumer against moto's server mode on loopback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from agent.errors import QueueError
from agent.queue import AssignmentQueue

if TYPE_CHECKING:
    from conftest import SqsQueue


def queue_of(sqs_queue: SqsQueue, endpoint: str) -> AssignmentQueue:
    return AssignmentQueue(sqs_queue.name, endpoint, "us-east-1")


async def test_receive_then_delete_empties_the_queue(
    sqs_queue: SqsQueue, moto_endpoint: str
) -> None:
    await sqs_queue.send("hello")

    async with queue_of(sqs_queue, moto_endpoint) as queue:
        message = await queue.receive(wait_s=1)
        assert message is not None
        await queue.delete(message)
        again = await queue.receive(wait_s=0)

    assert (message.body, message.receive_count) == ("hello", 1)
    assert again is None
    assert await sqs_queue.counts() == (0, 0)


async def test_a_received_message_stays_until_deleted(
    sqs_queue: SqsQueue, moto_endpoint: str
) -> None:
    await sqs_queue.send("hello")

    async with queue_of(sqs_queue, moto_endpoint) as queue:
        await queue.receive(wait_s=1)

    assert await sqs_queue.counts() == (0, 1)


async def test_visibility_zero_hands_the_message_back(
    sqs_queue: SqsQueue, moto_endpoint: str
) -> None:
    await sqs_queue.send("hello")

    async with queue_of(sqs_queue, moto_endpoint) as queue:
        first = await queue.receive(wait_s=1)
        assert first is not None
        await queue.change_visibility(first, 0)
        second = await queue.receive(wait_s=1)

    assert second is not None
    assert (second.message_id, second.receive_count) == (first.message_id, 2)


async def test_a_missing_queue_is_named_with_its_endpoint(
    moto_endpoint: str, aws_env: None
) -> None:
    with pytest.raises(QueueError) as caught:
        async with AssignmentQueue("segscan-nowhere", moto_endpoint, "us-east-1"):
            pass

    assert caught.value.subject == "segscan-nowhere"
    assert "look up the queue URL" in caught.value.message
    assert moto_endpoint in caught.value.message
    assert "NonExistentQueue" in caught.value.message


async def test_an_unreachable_endpoint_is_a_queue_error(aws_env: None) -> None:
    endpoint = "http://127.0.0.1:9"  # discard port: nothing listens on loopback

    with pytest.raises(QueueError, match="Could not connect") as caught:
        async with AssignmentQueue("segscan-x", endpoint, "us-east-1"):
            pass

    assert isinstance(caught.value.__cause__, Exception)
