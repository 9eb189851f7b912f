"""The agent's end of its subnet's SQS queue: receive, delete, hide for longer.

The same aiobotocore code talks to AWS and to the local lab's moto server;
only the endpoint differs.  botocore and aiohttp errors become ``QueueError``
here, naming the queue, the endpoint and the call that failed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from agent.config import AgentConfig
from agent.errors import QueueError

MAX_WAIT_S = 20  # the longest long poll SQS allows (ReceiveMessage WaitTimeSeconds)

# One quick retry, then our error: the runner has its own backoff loop.
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2},
    connect_timeout=5,
    read_timeout=MAX_WAIT_S + 10,  # a long poll must not read as a timeout
)


@dataclass(frozen=True)
class QueueMessage:
    """One received message: its text body and what is needed to settle it."""

    message_id: str
    body: str
    receipt_handle: str
    receive_count: int  # 1 on first delivery; redrive dead-letters past its limit


class AssignmentQueue:
    """The SQS queue ``<prefix><subnet>`` that carries this agent's assignments.

    Use as ``async with AssignmentQueue(...) as queue``: entering resolves the
    queue's URL, so a missing queue or an unreachable endpoint fails at once.
    """

    def __init__(self, name: str, endpoint: str | None, region: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.region = region
        self._client: Any = None
        self._url = ""
        self._exits = contextlib.AsyncExitStack()

    @classmethod
    def from_config(cls, config: AgentConfig) -> AssignmentQueue:
        """The queue of ``config``'s subnet."""
        return cls(config.queue_name, config.sqs_endpoint, config.region)

    def _lookup(self) -> dict[str, str]:
        # On AWS the queues live in the coordinator's account, not the agent's.
        owner = os.environ.get("SEGSCAN_QUEUE_OWNER", "").strip()
        lookup = {"QueueName": self.name}
        if owner:
            lookup["QueueOwnerAWSAccountId"] = owner

        return lookup

    async def __aenter__(self) -> Self:
        client = get_session().create_client(
            "sqs",
            region_name=self.region,
            endpoint_url=self.endpoint,
            config=_BOTO_CONFIG,
        )
        try:
            async with self._translated("look up the queue URL"):
                self._client = await self._exits.enter_async_context(client)
                reply = await self._client.get_queue_url(**self._lookup())
        except BaseException:
            await self._exits.aclose()
            raise
        self._url = reply["QueueUrl"]

        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exits.aclose()

    async def receive(self, wait_s: int = MAX_WAIT_S) -> QueueMessage | None:
        """The next message, or ``None`` when none came within ``wait_s``."""
        async with self._translated("receive"):
            reply = await self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=min(wait_s, MAX_WAIT_S),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        messages = reply.get("Messages", [])
        if not messages:
            return None
        raw = messages[0]

        return QueueMessage(
            message_id=raw["MessageId"],
            body=raw["Body"],
            receipt_handle=raw["ReceiptHandle"],
            receive_count=int(
                raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)
            ),
        )

    async def delete(self, message: QueueMessage) -> None:
        """Remove ``message`` for good: its work is done and stored."""
        async with self._translated(f"delete message {message.message_id}"):
            await self._sqs.delete_message(
                QueueUrl=self._url,
                ReceiptHandle=message.receipt_handle,
            )

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        """Keep ``message`` from other receivers for ``timeout_s`` from now.

        Zero hands it back to the queue at once.
        """
        async with self._translated(f"change visibility of {message.message_id}"):
            await self._sqs.change_message_visibility(
                QueueUrl=self._url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=timeout_s,
            )

    @property
    def _sqs(self) -> Any:
        if self._client is None:
            raise QueueError(self.name, "used outside 'async with'")
        return self._client

    @contextlib.asynccontextmanager
    async def _translated(self, action: str) -> AsyncIterator[None]:
        """Turn what botocore and aiohttp raise into a ``QueueError``."""
        where = self.endpoint or f"SQS in {self.region}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', '?')}: {error.get('Message', exc)}"
            raise QueueError(self.name, f"{action} at {where}: {detail}") from exc
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            raise QueueError(self.name, f"{action} at {where}: {exc}") from exc
