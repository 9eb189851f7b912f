"""A run's outcome as judging reads it: pair by pair, chunks with their results.

A run of a thousand subnets has hundreds of thousands of pairs, chunks and
results.  They are streamed from one query ordered by pair, so judging holds
one pair's chunks and results at a time, and an assignment is decoded only
for a dead chunk, whose targets its verdict names.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import sqlalchemy as sa

from coordinator.store import ChunkState, PairRecord, Store
from coordinator.tables import chunks, pairs, results
from protocol import codec
from protocol.messages import Assignment, Result

PARTITION_ROWS = 2_000


# Named tuples, not dataclasses: a run streams hundreds of thousands of each,
# and a frozen dataclass takes four times as long to make.
class ChunkOutcome(NamedTuple):
    """A chunk as its verdict needs it."""

    id: str
    probes: int
    state: str
    dead_reason: str | None
    targets: tuple[str, ...] | None  # read for a dead chunk only


class PairOutcome(NamedTuple):
    """One pair of a run, its chunks, and the counted results by chunk id."""

    pair: PairRecord
    chunks: list[ChunkOutcome]
    results: dict[str, Result]


async def by_pair(store: Store, run_id: str) -> AsyncIterator[PairOutcome]:
    """Every pair of the run with its chunks and results, one pair at a time.

    Pairs without a chunk come last, with none.
    """
    yielded = 0
    async with store.engine.connect() as conn:
        planned = (await conn.execute(_pair_count(run_id))).scalar_one()
        stream = await conn.stream(_outcomes(run_id))
        key: tuple[str, str] | None = None
        outcome: PairOutcome | None = None
        allowed: dict[str, dict[str, Any]] = {}  # the pairs of a rule share theirs
        async for partition in stream.partitions(PARTITION_ROWS):
            for row in partition:
                src, dst, expect, ports, chunk_id, *chunk, body = row
                if (src, dst) != key:
                    if outcome is not None:
                        yielded += 1
                        yield outcome
                    key = (src, dst)
                    pair = PairRecord(src, dst, expect, _allowed(allowed, ports))
                    outcome = PairOutcome(pair, [], {})
                assert outcome is not None
                outcome.chunks.append(_chunk(chunk_id, *chunk))
                if body is not None:
                    outcome.results[chunk_id] = codec.decode(body, Result)
        if outcome is not None:
            yielded += 1
            yield outcome
        if yielded < planned:
            async for pair in _without_chunks(conn, run_id):
                yield PairOutcome(pair, [], {})


def _pair_count(run_id: str) -> sa.Select[int]:
    return sa.select(sa.func.count()).where(pairs.c.run_id == run_id)


def _outcomes(run_id: str) -> sa.Select[Any]:
    """Each chunk of the run with its pair and its counted result, by pair.

    Driven by the chunks, whose pair and result are found by primary key.
    """
    dead_assignment = sa.case(
        (chunks.c.state == ChunkState.DEAD, chunks.c.assignment), else_=sa.null()
    )

    return (
        sa.select(
            chunks.c.src,
            chunks.c.dst,
            pairs.c.expect,
            pairs.c.allowed,
            chunks.c.id,
            chunks.c.probes,
            chunks.c.state,
            chunks.c.dead_reason,
            dead_assignment,
            results.c.body,
        )
        .join(
            pairs,
            sa.and_(
                pairs.c.run_id == chunks.c.run_id,
                pairs.c.src == chunks.c.src,
                pairs.c.dst == chunks.c.dst,
            ),
        )
        .outerjoin(
            results,
            sa.and_(results.c.assignment_id == chunks.c.id, results.c.run_id == run_id),
        )
        .where(chunks.c.run_id == run_id)
        .order_by(chunks.c.src, chunks.c.dst, chunks.c.id)
    )


async def _without_chunks(conn: Any, run_id: str) -> AsyncIterator[PairRecord]:
    planned = sa.select(chunks.c.src, chunks.c.dst).where(chunks.c.run_id == run_id)
    query = sa.select(pairs).where(
        pairs.c.run_id == run_id,
        sa.tuple_(pairs.c.src, pairs.c.dst).not_in(planned),
    )
    allowed: dict[str, dict[str, Any]] = {}
    for row in await conn.execute(query):
        yield PairRecord(row.src, row.dst, row.expect, _allowed(allowed, row.allowed))


def _allowed(
    parsed: dict[str, dict[str, Any]], text: str | None
) -> dict[str, Any] | None:
    if not text:
        return None
    if text not in parsed:
        parsed[text] = json.loads(text)

    return parsed[text]


def _chunk(
    chunk_id: str,
    probes: int,
    state: str,
    dead_reason: str | None,
    assignment: bytes | None,
) -> ChunkOutcome:
    targets = None
    if assignment is not None:
        targets = codec.decode(assignment, Assignment).targets

    return ChunkOutcome(chunk_id, probes, state, dead_reason, targets)
