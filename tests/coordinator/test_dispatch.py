"""Dispatch against moto's SQS server: signed bodies, a queue per source subnet."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.dispatch import Dispatcher, QueueConfig
from coordinator.errors import EXIT_INCONCLUSIVE, QueueError
from protocol import codec, envelope
from protocol.envelope import Context
from protocol.messages import Assignment
from protocol.signer import FileSigner

REGION = "us-east-1"
SIGNER = FileSigner(Ed25519PrivateKey.generate())


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "segscan-lab")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "segscan-lab")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def config(moto_endpoint: str) -> QueueConfig:
    """Queues under a prefix of this test's own on the shared moto server."""
    return QueueConfig(moto_endpoint, REGION, f"t{uuid.uuid4().hex[:8]}-")


@pytest.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "sqs", region_name=REGION, endpoint_url=moto_endpoint
    ) as client:
        yield client


def _assignment(index: int, src: str) -> Assignment:
    return Assignment(
        id=f"a{index}",
        run_id="run-1",
        src=src,
        dst="cde-a",
        targets=(f"10.0.1.{index}/32",),
        tcp=((22, 22),),
        udp=(),
        rate_pps=100,
        passes=1,
        issued_at=1.0,
        expires_at=3601.0,
    )


async def _drain(sqs: Any, url: str) -> list[Assignment]:
    received: list[Assignment] = []
    for _ in range(20):
        reply = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        messages = reply.get("Messages", [])
        if not messages:
            break
        received += [_verified(m["Body"]) for m in messages]

    return received


def _verified(body: str) -> Assignment:
    """The assignment in a queue body, checked as an agent checks it."""
    signed = envelope.open_envelope(codec.from_text(body), 256 * 1024)
    envelope.check(signed, Context.ASSIGNMENT, {SIGNER.key_id: SIGNER.public_key})

    return codec.decode(signed.payload, Assignment)


async def test_assignments_land_on_the_queue_of_their_source_subnet(
    config: QueueConfig, sqs: Any
) -> None:
    """More than one SQS batch per queue; each body verifies and decodes back."""
    urls = {
        src: (await sqs.create_queue(QueueName=config.queue_name(src)))["QueueUrl"]
        for src in ("corp-a", "corp-b")
    }
    corp_a = [_assignment(i, "corp-a") for i in range(23)]
    corp_b = [_assignment(100 + i, "corp-b") for i in range(3)]

    await Dispatcher(config, SIGNER).send(corp_a + corp_b)

    got_a = await _drain(sqs, urls["corp-a"])
    got_b = await _drain(sqs, urls["corp-b"])
    assert sorted(got_a, key=lambda a: a.id) == sorted(corp_a, key=lambda a: a.id)
    assert sorted(got_b, key=lambda a: a.id) == corp_b


async def test_a_missing_queue_is_a_queue_error_naming_it(config: QueueConfig) -> None:
    with pytest.raises(QueueError) as info:
        await Dispatcher(config, SIGNER).send([_assignment(1, "cde-z")])

    assert info.value.subject == f"{config.prefix}cde-z"
    assert info.value.message == "no such queue"
    assert info.value.exit_code == EXIT_INCONCLUSIVE


async def test_an_unreachable_endpoint_is_a_queue_error(
    unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore would otherwise retry the refused connection, with backoff, for seconds.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{unused_tcp_port}"
    config = QueueConfig(endpoint, REGION, "segscan-")

    with pytest.raises(QueueError) as info:
        await Dispatcher(config, SIGNER).send([_assignment(1, "corp-a")])

    assert info.value.subject == "segscan-corp-a"
    assert info.value.message.startswith(f"cannot reach SQS at {endpoint}")


async def test_nothing_is_sent_unsigned(config: QueueConfig, sqs: Any) -> None:
    url = (await sqs.create_queue(QueueName=config.queue_name("corp-a")))["QueueUrl"]

    with pytest.raises(QueueError, match="no signing key"):
        await Dispatcher(config).send([_assignment(1, "corp-a")])

    assert await _drain(sqs, url) == []


def test_queue_config_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSCAN_SQS_ENDPOINT", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("SEGSCAN_QUEUE_PREFIX", "lab-")

    config = QueueConfig.from_env()

    assert config == QueueConfig("http://127.0.0.1:5000", "eu-west-1", "lab-")
    assert config.queue_name("cde-a") == "lab-cde-a"


def test_queue_config_defaults_to_aws_and_the_segscan_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SEGSCAN_SQS_ENDPOINT", "AWS_DEFAULT_REGION", "SEGSCAN_QUEUE_PREFIX"):
        monkeypatch.delenv(name, raising=False)

    config = QueueConfig.from_env()

    assert config == QueueConfig(None, "us-east-1", "segscan-")
    assert config.queue_name("cde-a") == "segscan-cde-a"
