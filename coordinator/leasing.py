"""Leasing: queued chunks go to their sources' queues as budgets allow.

A run's chunks are recorded ``queued``.  Each pump finds the queued chunks of
unfinished runs whose destinations have room left in their rate budget
(coordinator/budget.py), stamps each with its share of the rate and a fresh
issue time, sends it, and records it ``leased``.  A chunk leaves ``leased``
when its result is stored (``done``) or its message is dead-lettered
(``dead``), which gives its share back.

Sending comes before recording, one source queue at a time: a coordinator
that dies in between re-sends those chunks when it comes back, and the agent's
duplicate is answered by idempotent intake.  The other order could leave a
chunk ``leased`` that no queue holds, silent until the run's deadline.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import defaultdict

import msgspec
import sqlalchemy as sa
import structlog

from coordinator import budget, planner
from coordinator.budget import Candidate
from coordinator.dispatch import Dispatcher
from coordinator.store import ChunkState, Store, execute_many
from coordinator.tables import chunks, runs
from protocol import codec
from protocol.messages import Assignment

log = structlog.get_logger(__name__)


# One pump at a time per store: two at once would both send the same chunks.
_locks: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


async def pump(store: Store, dispatcher: Dispatcher, now: float | None = None) -> int:
    """Lease every queued chunk that fits its destination's budget.

    Returns how many were leased; raises the dispatcher's ``QueueError`` after
    recording the sources whose queues did take their chunks.
    """
    async with _locks.setdefault(store, asyncio.Lock()):
        now = time.time() if now is None else now
        used = await _used_pps(store)
        queued = await _queued(store)
        by_src: defaultdict[str, list[Assignment]] = defaultdict(list)
        for candidate in budget.choose(queued, used):
            assignment = _stamp(queued[candidate], candidate, now)
            by_src[assignment.src].append(assignment)
        sent: list[Assignment] = []
        try:
            for batch in by_src.values():
                await dispatcher.send(batch)
                sent.extend(batch)
        finally:
            # What did go out is recorded even when a later queue failed.
            await _mark_leased(store, sent, now)
        if sent:
            log.info("chunks_leased", count=len(sent), sources=len(by_src))

        return len(sent)


def _stamp(assignment: Assignment, candidate: Candidate, now: float) -> Assignment:
    """The assignment as leased: at its share of the budget, issued now."""
    return msgspec.structs.replace(
        assignment,
        rate_pps=candidate.rate_pps,
        issued_at=now,
        expires_at=now + planner.ASSIGNMENT_TTL_S,
    )


def _open_runs() -> sa.Select[tuple[str]]:
    return sa.select(runs.c.id).where(runs.c.finished_at.is_(None))


async def _used_pps(store: Store) -> dict[str, int]:
    """How much of each destination's budget leased chunks hold."""
    query = (
        sa.select(chunks.c.dst, sa.func.sum(chunks.c.rate_pps))
        .where(chunks.c.state == ChunkState.LEASED, chunks.c.run_id.in_(_open_runs()))
        .group_by(chunks.c.dst)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()

    return {dst: int(used or 0) for dst, used in rows}


async def _queued(store: Store) -> dict[Candidate, Assignment]:
    """The first few queued chunks of each destination, oldest run first.

    No more than ``MAX_SLOTS`` per destination can be leased at once, so no
    more are read: a pump costs the same whatever the size of the backlog.
    """
    rank = sa.func.row_number().over(
        partition_by=chunks.c.dst, order_by=(chunks.c.run_id, chunks.c.id)
    )
    # The ranking sorts every queued chunk, so it carries ids alone; the
    # assignments, most of a row, are read only for the chunks it keeps.
    ranked = (
        sa.select(chunks.c.id, rank.label("rank"))
        .where(chunks.c.state == ChunkState.QUEUED, chunks.c.run_id.in_(_open_runs()))
        .subquery()
    )
    query = (
        sa.select(
            chunks.c.id,
            chunks.c.dst,
            chunks.c.budget_pps,
            chunks.c.rate_pps,
            chunks.c.assignment,
        )
        .join(ranked, ranked.c.id == chunks.c.id)
        .where(ranked.c.rank <= budget.MAX_SLOTS)
        .order_by(ranked.c.rank, chunks.c.dst)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    queued = {}
    for row in rows:
        assignment = codec.decode(row.assignment, Assignment)
        whole = row.budget_pps or assignment.rate_pps  # rows planned before budgets
        candidate = Candidate(row.id, row.dst, whole, row.rate_pps or whole)
        queued[candidate] = assignment

    return queued


async def _mark_leased(store: Store, batch: list[Assignment], now: float) -> None:
    """Record ``batch`` as leased, as sent; a chunk settled meanwhile stays so."""
    if not batch:
        return
    query = (
        sa.update(chunks)
        .where(
            chunks.c.id == sa.bindparam("chunk"),
            chunks.c.state == ChunkState.QUEUED,
        )
        .values(state=ChunkState.LEASED, leased_at=now, assignment=sa.bindparam("sent"))
    )
    rows = ((a.id, codec.encode(a)) for a in batch)
    async with store.engine.begin() as conn:
        await execute_many(conn, query, ("chunk", "sent"), rows)
