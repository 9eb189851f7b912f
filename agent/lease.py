"""Leases on queue messages: hidden while their work is open, journaled on disk.

From receipt until the coordinator has acknowledged its result, a message is
the agent's lease: its visibility is extended every third of ``lease_s``, so
one failed renewal does not hand it to another receiver (SQS Developer Guide,
"Visibility timeout"), and it is deleted only once the result is stored.
Each lease is journaled under ``<state dir>/leases``.  A restarted agent
restores the journal: a message whose result waits in the spool is held
again; any other is handed back at once, so the chunk of a killed agent comes
back to the restarted one in seconds rather than when its timeout lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog

from agent.errors import QueueError
from agent.queue import AssignmentQueue, QueueMessage

log = structlog.get_logger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9-]{1,128}")


class LeaseRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a restarted agent needs to hold or hand back a message."""

    message_id: str
    receipt_handle: str
    assignment_id: str
    expires_at: float  # the assignment's; past it the message is refused anyway


class Leases:
    """The messages this agent holds, each kept hidden by a task of its own."""

    def __init__(self, queue: AssignmentQueue, directory: Path, lease_s: int) -> None:
        self.queue = queue
        self.directory = directory
        self.lease_s = lease_s
        self._held: dict[str, tuple[LeaseRecord, asyncio.Task[None]]] = {}

    @property
    def held(self) -> int:
        return len(self._held)

    def expiry(self, assignment_id: str) -> float | None:
        held = self._held.get(assignment_id)

        return held[0].expires_at if held else None

    async def hold(
        self, message: QueueMessage, assignment_id: str, expires_at: float
    ) -> None:
        """Keep ``message`` hidden until it is settled or released."""
        record = LeaseRecord(
            message.message_id, message.receipt_handle, assignment_id, expires_at
        )
        self._journal(record)
        await self._extend(record)
        self._keep(record)

    async def settle(self, assignment_id: str) -> None:
        """The work is stored: delete the message and end the lease.

        If the delete fails the message comes back later, and the spool's
        acknowledgement tells the agent to delete it then.
        """
        record = self._end(assignment_id)
        if record is None:
            return
        try:
            await self.queue.delete(_message(record))
        except QueueError as exc:
            log.warning("message_not_deleted", error=str(exc), **_fields(record))
        self._forget(record)

    async def release(self, assignment_id: str) -> None:
        """Hand the message back to the queue at once; nothing of it is kept."""
        record = self._end(assignment_id)
        if record is None:
            return
        with contextlib.suppress(QueueError):
            await self.queue.change_visibility(_message(record), 0)
        self._forget(record)
        log.info("lease_released", **_fields(record))

    async def restore(self, waiting: Callable[[str], bool]) -> tuple[int, int]:
        """Take up the journal of a previous process: (held again, handed back).

        ``waiting`` says whether an assignment's result waits in the spool.
        """
        held = returned = 0
        for record in self._journaled():
            if waiting(record.assignment_id) and await self._extend(record):
                self._keep(record)
                held += 1
                continue
            with contextlib.suppress(QueueError):
                await self.queue.change_visibility(_message(record), 0)
            self._forget(record)
            returned += 1
        if held or returned:
            log.info("leases_restored", held=held, handed_back=returned)

        return held, returned

    async def close(self) -> None:
        """Stop renewing; the journal stays for the next process to restore."""
        tasks = [task for _, task in self._held.values()]
        self._held.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _keep(self, record: LeaseRecord) -> None:
        task = asyncio.create_task(self._renew(record))
        self._held[record.assignment_id] = (record, task)

    async def _renew(self, record: LeaseRecord) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            await self._extend(record)

    async def _extend(self, record: LeaseRecord) -> bool:
        try:
            await self.queue.change_visibility(_message(record), self.lease_s)
        except QueueError as exc:
            log.warning("visibility_not_extended", error=str(exc), **_fields(record))
            return False

        return True

    def _end(self, assignment_id: str) -> LeaseRecord | None:
        held = self._held.pop(assignment_id, None)
        if held is None:
            return None
        record, task = held
        task.cancel()

        return record

    def _journal(self, record: LeaseRecord) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(record)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(msgspec.json.encode(record))
        temporary.replace(path)

    def _journaled(self) -> list[LeaseRecord]:
        if not self.directory.is_dir():
            return []
        records = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                records.append(msgspec.json.decode(path.read_bytes(), type=LeaseRecord))
            except (OSError, msgspec.DecodeError):
                path.unlink(missing_ok=True)

        return records

    def _forget(self, record: LeaseRecord) -> None:
        self._path(record).unlink(missing_ok=True)

    def _path(self, record: LeaseRecord) -> Path:
        # SQS message ids are UUIDs; anything else is hashed into a file name.
        name = record.message_id
        if not _SAFE_NAME.fullmatch(name):
            name = hashlib.sha256(name.encode()).hexdigest()

        return self.directory / f"{name}.json"


def _message(record: LeaseRecord) -> QueueMessage:
    return QueueMessage(record.message_id, "", record.receipt_handle, 0)


def _fields(record: LeaseRecord) -> dict[str, str]:
    return {"message_id": record.message_id, "assignment": record.assignment_id}
