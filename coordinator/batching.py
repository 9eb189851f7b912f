"""Group commit: concurrent submissions written together by one writer task.

Result intake at thousands of posts per second cannot afford a transaction
per post: each costs a few round trips and a commit.  Posts that arrive while
a batch is being written wait for the next one, so a batch grows with the
load and a lone post is written at once.  Every submitter still learns its
own outcome only after the batch holding it has been committed.

A batch mostly waits: on round trips, and on the commit's flush to disk.  So
up to ``writers`` batches may be written at once, each in its own
transaction: a post that arrives while one is committing starts the next
instead of queueing behind it, and the database flushes their commits
together.  The store keeps one writer where writers would only queue for the
database's lock (SQLite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256


class Batcher(Generic[T, R]):
    """Writes submitted items in batches through ``write``, up to ``writers``
    batches at a time.

    ``write`` returns one outcome per item, in order.  When a batch fails, its
    items are retried one by one, so one bad item fails only its own submitter.
    """

    def __init__(
        self,
        write: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_batch: int = MAX_BATCH,
        writers: int = 1,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._max_writers = writers
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        # Writers counted from their start to the moment their loop ends: a
        # task's done callbacks run a step later, and a post submitted in
        # between must not be left waiting for a writer that has stopped.
        self._writing = 0
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """The outcome of ``item``, once the batch holding it is written."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writing < self._max_writers:
            self._writing += 1
            writer = asyncio.create_task(self._drain())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)

        return await future

    async def close(self) -> None:
        """Wait for what was submitted to be written."""
        if self._writers:
            await asyncio.wait(set(self._writers))

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write_batch(batch)
        finally:
            self._writing -= 1

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            outcomes = await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            log.warning("batch_failed", items=len(batch), error=repr(exc))
            for one in batch:
                await self._write_batch([one])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)


def _settle(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
