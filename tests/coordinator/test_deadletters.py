"""Dead letters: read, kept as evidence, and the chunks they carry marked dead."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiobotocore.session import get_session

from coordinator import accounting, deadletters
from coordinator.deadletters import Drain
from coordinator.dispatch import QueueConfig
from coordinator.store import ChunkState, PairRecord, RunRecord, Store
from protocol import codec
from protocol.messages import Assignment, Result

PAIRS = [PairRecord("corp-a", "cde-a", "closed", None)]


def _assignment(chunk: str) -> Assignment:
    return Assignment(
        id=chunk,
        run_id="run-1",
        src="corp-a",
        dst="cde-a",
        targets=("10.0.1.0/28",),
        tcp=((22, 22),),
        udp=(),
        rate_pps=100,
        passes=1,
        issued_at=100.0,
        expires_at=3700.0,
    )


@pytest.fixture
async def planned(any_store: Store) -> list[Assignment]:
    chunks = [_assignment("c1"), _assignment("c2")]
    run = RunRecord(
        "run-1", "full", None, "p.yaml", "version: 1\n", "0" * 64,
        100.0, 10_000.0, None, None, None,
    )  # fmt: skip
    await any_store.add_run(run, PAIRS, [(a, 14) for a in chunks])

    return chunks


def test_a_bare_assignment_is_read_as_one() -> None:
    body = codec.to_text(codec.encode(_assignment("c1")))

    letter = deadletters.read("m1", "segscan-corp-a-dlq", body, 5)

    assert letter.assignment == _assignment("c1")
    assert letter.reason == "dead-lettered after 5 receives"


def test_an_assignment_inside_a_signed_envelope_is_read_as_one() -> None:
    payload = codec.encode(_assignment("c1"))
    envelope = msgspec.msgpack.encode(
        {"type": "signed", "payload": payload, "key": "k", "signature": b"\0" * 64}
    )

    letter = deadletters.read("m1", "q", codec.to_text(envelope), 5)

    assert letter.assignment is not None
    assert letter.assignment.id == "c1"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not base64 at all!", "not base64"),
        (codec.to_text(b"\x93\x01\x02\x03"), "undecodable"),
        (codec.to_text(msgspec.msgpack.encode({"payload": b"junk"})), "undecodable"),
    ],
)
def test_a_poison_body_is_read_as_no_assignment(body: str, problem: str) -> None:
    letter = deadletters.read("m1", "q", body, 6)

    assert letter.assignment is None
    assert problem in letter.reason


async def test_a_dead_letter_of_an_open_chunk_makes_it_dead(
    any_store: Store, planned: list[Assignment]
) -> None:
    body = codec.to_text(codec.encode(planned[0]))
    letter = deadletters.read("m1", "segscan-corp-a-dlq", body, 5)

    new = await deadletters.record(any_store, letter, time.time())
    again = await deadletters.record(any_store, letter, time.time())

    chunks = {c.id: c for c in await any_store.chunks("run-1")}
    assert (new, again) == (True, False)
    assert chunks["c1"].state == ChunkState.DEAD
    assert chunks["c1"].dead_reason == "dead-lettered after 5 receives"
    assert chunks["c2"].state == ChunkState.QUEUED
    books = await accounting.books(any_store, "run-1")
    assert [d["chunk"] for d in books["dead_letters"]] == ["c1"]


async def test_a_dead_letter_of_a_done_chunk_changes_nothing(
    any_store: Store, planned: list[Assignment], result_for: Callable[..., Result]
) -> None:
    """A copy of a message that was also delivered: the result stands."""
    result = result_for(planned[0])
    await any_store.add_result(result, codec.encode(result))
    letter = deadletters.read("m1", "q", codec.to_text(codec.encode(planned[0])), 5)

    await deadletters.record(any_store, letter, time.time())

    chunks = {c.id: c for c in await any_store.chunks("run-1")}
    assert chunks["c1"].state == ChunkState.DONE
    assert len(await accounting.recent_dead_letters(any_store)) == 1


async def test_a_poison_dead_letter_is_kept_without_a_run(
    any_store: Store, planned: list[Assignment]
) -> None:
    letter = deadletters.read("m9", "segscan-corp-a-dlq", "garbage!", 6)

    await deadletters.record(any_store, letter, time.time())

    [kept] = await accounting.recent_dead_letters(any_store)
    assert (kept["chunk"], kept["run"], kept["message_id"]) == (None, None, "m9")
    assert {c.state for c in await any_store.chunks("run-1")} == {ChunkState.QUEUED}


@pytest.fixture
async def sqs(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "segscan-lab")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "segscan-lab")
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_endpoint
    ) as client:
        yield client


async def test_a_sweep_moves_redriven_messages_into_the_store(
    store: Store, sqs: Any, moto_endpoint: str
) -> None:
    """Through moto's redrive: poison and a chunk's message, each kept once."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    url = await _queue_with_redrive(sqs, prefix + "corp-a")
    chunk = _assignment("c1")
    await store.add_run(
        RunRecord(
            "run-1", "full", None, "p.yaml", "version: 1\n", "0" * 64,
            100.0, 10_000.0, None, None, None,
        ),
        PAIRS,
        [(chunk, 14)],
    )  # fmt: skip
    for body in ("poison!", codec.to_text(codec.encode(chunk))):
        await sqs.send_message(QueueUrl=url, MessageBody=body)
    for _ in range(3):  # receive past maxReceiveCount: moto redrives on receive
        await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
    drain = Drain(store, QueueConfig(moto_endpoint, "us-east-1", prefix), sqs)

    taken = await drain.sweep(["corp-a"])
    again = await drain.sweep(["corp-a"])

    assert (taken, again) == (2, 0)
    letters = await accounting.recent_dead_letters(store)
    assert sorted(str(d["chunk"]) for d in letters) == ["None", "c1"]
    assert all(d["queue"] == prefix + "corp-a-dlq" for d in letters)
    assert [c.state for c in await store.chunks("run-1")] == [ChunkState.DEAD]


async def _queue_with_redrive(sqs: Any, name: str) -> str:
    dlq = await sqs.create_queue(QueueName=name + "-dlq")
    attributes = await sqs.get_queue_attributes(
        QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"]
    )
    policy = {"deadLetterTargetArn": attributes["Attributes"]["QueueArn"]}
    queue = await sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps(policy | {"maxReceiveCount": "2"})},
    )

    return str(queue["QueueUrl"])
