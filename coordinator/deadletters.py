"""Dead letters: messages SQS gave up on, kept as evidence and accounted for.

A message that agents keep refusing (undecodable, failed verification) is
moved by its queue's redrive policy to ``<queue>-dlq`` after a few receives.
The coordinator drains those queues: each message is stored whole; when it
carries one of our assignments whose chunk is still open, the chunk becomes
``dead`` and its pair inconclusive, naming it.  A dead letter of a chunk that
has its result (a copy of a message that was also delivered) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from coordinator.dispatch import QueueConfig
from coordinator.errors import QueueError
from coordinator.store import ChunkState, Store
from coordinator.tables import chunks, dead_letters, pairs, refusals, runs
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import Assignment

log = structlog.get_logger(__name__)

DLQ_SUFFIX = "-dlq"  # deploy/aws/coordinator.yaml names them so
SQS_BATCH = 10  # ReceiveMessage returns at most ten
MAX_ROUNDS = 20  # per queue and sweep: a flood waits for the next sweep
RECENT_S = 3600.0  # finished runs' queues are drained this long after


@dataclass(frozen=True)
class DeadLetter:
    """One message off a dead-letter queue."""

    message_id: str
    queue: str
    body: str
    receive_count: int
    assignment: Assignment | None
    reason: str


def read(message_id: str, queue: str, body: str, receive_count: int) -> DeadLetter:
    """What a dead-lettered queue body is: one of our assignments, or not."""
    assignment, problem = _assignment_in(body)
    reason = f"dead-lettered after {receive_count} receives"
    if problem:
        reason += f"; {problem}"

    return DeadLetter(message_id, queue, body, receive_count, assignment, reason)


def _assignment_in(body: str) -> tuple[Assignment | None, str]:
    """The assignment a body carries, bare or inside a signed envelope."""
    try:
        raw = codec.from_text(body)
    except ProtocolError:
        return None, "not base64: not a message of ours"
    try:
        return codec.decode(raw, Assignment), ""
    except ProtocolError:
        pass
    try:
        # The envelope's signature was ours when sent; only the id is read here.
        payload = msgspec.msgpack.decode(raw).get("payload")
        return codec.decode(payload, Assignment), ""
    except (msgspec.DecodeError, AttributeError, TypeError, ProtocolError):
        return None, "undecodable: not an assignment"


async def record(store: Store, letter: DeadLetter, now: float) -> bool:
    """Keep ``letter``; mark its chunk dead if still open.  False if known."""
    chunk_id = letter.assignment.id if letter.assignment else None
    async with store.engine.begin() as conn:
        known = await conn.execute(
            sa.select(dead_letters.c.message_id).where(
                dead_letters.c.message_id == letter.message_id
            )
        )
        if known.first() is not None:
            return False
        run_id = await _run_of(conn, chunk_id)
        reason = letter.reason + await _refused(conn, letter.message_id)
        await conn.execute(
            sa.insert(dead_letters).values(
                message_id=letter.message_id,
                queue=letter.queue,
                received_at=now,
                receive_count=letter.receive_count,
                chunk_id=chunk_id if run_id else None,
                run_id=run_id,
                reason=reason,
                body=letter.body,
            )
        )
        if run_id is not None:
            await _kill(conn, chunk_id, reason, now)
    log.warning(
        "dead_letter",
        queue=letter.queue,
        message_id=letter.message_id,
        chunk=chunk_id,
        run=run_id,
        reason=reason,
    )

    return True


async def _run_of(conn: Any, chunk_id: str | None) -> str | None:
    if chunk_id is None:
        return None
    query = sa.select(chunks.c.run_id).where(chunks.c.id == chunk_id)
    row = (await conn.execute(query)).first()

    return str(row.run_id) if row else None


async def _refused(conn: Any, message_id: str) -> str:
    """Why agents refused the message, as the last of them reported it."""
    query = (
        sa.select(refusals.c.agent, refusals.c.reason, refusals.c.detail)
        .where(refusals.c.message_id == message_id)
        .order_by(refusals.c.id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()

    return f"; refused by {row.agent}: {row.reason} ({row.detail})" if row else ""


async def _kill(conn: Any, chunk_id: str | None, reason: str, now: float) -> None:
    open_runs = sa.select(runs.c.id).where(runs.c.finished_at.is_(None))
    await conn.execute(
        sa.update(chunks)
        .where(
            chunks.c.id == chunk_id,
            chunks.c.state.in_([ChunkState.QUEUED, ChunkState.LEASED]),
            chunks.c.run_id.in_(open_runs),
        )
        .values(state=ChunkState.DEAD, dead_reason=reason, settled_at=now)
    )


async def watched_sources(store: Store, now: float) -> list[str]:
    """The source subnets of unfinished and recently finished runs."""
    recent = sa.or_(runs.c.finished_at.is_(None), runs.c.finished_at > now - RECENT_S)
    query = (
        sa.select(pairs.c.src)
        .distinct()
        .join(runs, runs.c.id == pairs.c.run_id)
        .where(recent)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).scalars().all()

    return sorted(rows)


@dataclass
class Drain:
    """Drains dead-letter queues into a store through one SQS client."""

    store: Store
    config: QueueConfig
    client: Any
    _urls: dict[str, str | None] = field(default_factory=dict)

    async def sweep(self, sources: Iterable[str]) -> int:
        """Take every waiting dead letter of ``sources``; how many were new.

        Raise ``QueueError`` when SQS cannot be reached at all: the rest of
        the sweep would fail the same way.
        """
        taken = 0
        for src in sources:
            name = self.config.queue_name(src) + DLQ_SUFFIX
            try:
                taken += await self._drain(name)
            except ClientError as exc:
                log.warning("dead_letter_queue_failed", queue=name, error=str(exc))
            except (BotoCoreError, OSError) as exc:
                where = self.config.endpoint or "AWS"
                raise QueueError(name, f"cannot reach SQS at {where}: {exc}") from exc

        return taken

    async def _drain(self, name: str) -> int:
        url = await self._url(name)
        if url is None:
            return 0
        taken = 0
        for _ in range(MAX_ROUNDS):
            reply = await self.client.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=SQS_BATCH,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages = reply.get("Messages", [])
            for message in messages:
                taken += await self._keep(name, url, message)
            if len(messages) < SQS_BATCH:
                break

        return taken

    async def _keep(self, name: str, url: str, message: dict[str, Any]) -> int:
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        # The dead-letter queue's own receive adds one: report the source's count.
        letter = read(message["MessageId"], name, message["Body"], max(1, count - 1))
        new = await record(self.store, letter, time.time())
        await self.client.delete_message(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
        )

        return int(new)

    async def _url(self, name: str) -> str | None:
        if name not in self._urls:
            try:
                reply = await self.client.get_queue_url(QueueName=name)
                self._urls[name] = reply["QueueUrl"]
            except ClientError:
                log.warning("dead_letter_queue_missing", queue=name)
                self._urls[name] = None

        return self._urls[name]
