"""Sends assignments to the SQS queue of each source subnet, signed.

Each queue body is the base64 of a signed envelope (protocol/envelope.py)
around the assignment, so agents verify the coordinator's signature before
decoding anything.  The same aiobotocore code talks to AWS and to the local
lab's moto server; only the endpoint differs.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from coordinator.errors import QueueError
from protocol import codec, envelope
from protocol.envelope import Context
from protocol.messages import Assignment
from protocol.signer import Signer
from protocol.signing import SignatureError

log = structlog.get_logger(__name__)

SQS_BATCH = 10  # SendMessageBatch takes at most ten entries


@dataclass(frozen=True)
class QueueConfig:
    endpoint: str | None = None
    region: str = "us-east-1"
    prefix: str = "segscan-"

    @classmethod
    def from_env(cls) -> QueueConfig:
        return cls(
            endpoint=os.environ.get("SEGSCAN_SQS_ENDPOINT") or None,
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            prefix=os.environ.get("SEGSCAN_QUEUE_PREFIX", "segscan-"),
        )

    def queue_name(self, subnet: str) -> str:
        return f"{self.prefix}{subnet}"


@dataclass
class Dispatcher:
    """Puts assignments on the queue of the subnet that must run them."""

    config: QueueConfig
    signer: Signer | None = None  # required to send; tests that only plan omit it
    _urls: dict[str, str] = field(default_factory=dict)

    async def send(self, assignments: Sequence[Assignment]) -> None:
        """Send every assignment; raise ``QueueError`` naming the queue on failure."""
        by_src: defaultdict[str, list[Assignment]] = defaultdict(list)
        for assignment in assignments:
            by_src[assignment.src].append(assignment)
        session = get_session()
        async with session.create_client(
            "sqs", region_name=self.config.region, endpoint_url=self.config.endpoint
        ) as client:
            for src, batch in by_src.items():
                await self._send_queue(client, src, batch)

    async def _send_queue(self, client: Any, src: str, batch: list[Assignment]) -> None:
        name = self.config.queue_name(src)
        try:
            url = await self._url(client, name)
            for start in range(0, len(batch), SQS_BATCH):
                entries = [
                    {"Id": str(i), "MessageBody": await self._body(name, a)}
                    for i, a in enumerate(batch[start : start + SQS_BATCH])
                ]
                reply = await client.send_message_batch(QueueUrl=url, Entries=entries)
                if reply.get("Failed"):
                    failed = reply["Failed"][0]
                    raise QueueError(name, f"SQS refused a message: {failed}")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                raise QueueError(name, "no such queue") from exc
            raise QueueError(name, f"SQS error: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            where = self.config.endpoint or "AWS"
            raise QueueError(name, f"cannot reach SQS at {where}: {exc}") from exc
        log.info("assignments_sent", queue=name, count=len(batch))

    async def _body(self, queue: str, assignment: Assignment) -> str:
        """The queue body of ``assignment``: its signed envelope, as text."""
        if self.signer is None:
            raise QueueError(queue, "no signing key: assignments go out signed")
        try:
            sealed = await envelope.seal(
                codec.encode(assignment), Context.ASSIGNMENT, self.signer
            )
        except SignatureError as exc:
            raise QueueError(queue, f"cannot sign assignment: {exc}") from exc

        return codec.to_text(sealed)

    async def _url(self, client: Any, name: str) -> str:
        if name not in self._urls:
            reply = await client.get_queue_url(QueueName=name)
            self._urls[name] = reply["QueueUrl"]

        return self._urls[name]
