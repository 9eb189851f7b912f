"""Durable state of runs, chunks, results and agents, through SQLAlchemy.

SQLite (aiosqlite) by default; the same code runs on PostgreSQL (asyncpg) when
the URL says so, and the schema is kept by the Alembic migrations in
coordinator/migrations.  Results are stored as the agent's msgpack bytes, so
what is judged is exactly what was received; they are filed in batches
(coordinator/batching.py), each post answered once its batch is committed.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from coordinator import budget, metrics, migrations
from coordinator.batching import Batcher
from coordinator.tables import (
    agents,
    chunks,
    late_results,
    pairs,
    results,
    runs,
)
from protocol import codec
from protocol.messages import Assignment, Result

DEFAULT_DB_URL = "sqlite+aiosqlite:///segscan.db"
# Batches of result posts written at once, each on its own connection of the
# pool (SQLAlchemy's default keeps five, and lends up to ten more).
INTAKE_WRITERS = 4


class ChunkState(enum.StrEnum):
    QUEUED = "queued"  # planned; waits for its destination's budget
    LEASED = "leased"  # on its source's queue, holding a share of the budget
    DONE = "done"  # one result stored and counted
    DEAD = "dead"  # its message went to the dead-letter queue


UNSETTLED = (ChunkState.QUEUED, ChunkState.LEASED)


class Intake(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"  # no such assignment
    WRONG_SUBNET = "wrong-subnet"  # sent for a chunk addressed to another subnet


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str
    base_run: str | None
    policy_source: str
    policy_text: str
    policy_sha256: str
    created_at: float
    deadline: float
    finished_at: float | None
    verdict: str | None
    report: dict[str, Any] | None


@dataclass(frozen=True)
class PairRecord:
    src: str
    dst: str
    expect: str
    allowed: dict[str, Any] | None


@dataclass(frozen=True)
class ChunkRecord:
    id: str
    src: str
    dst: str
    probes: int
    state: str
    assignment: Assignment
    dead_reason: str | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        return self.assignment.targets


@dataclass(frozen=True)
class AgentRecord:
    id: str
    subnet: str
    last_seen: float
    assignment_id: str | None


class Store:
    """The coordinator's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        writers = 1 if engine.dialect.name == "sqlite" else INTAKE_WRITERS
        self._intake: Batcher[Posted, Intake] = Batcher(
            self.add_results, writers=writers
        )

    @classmethod
    async def open(cls, url: str = DEFAULT_DB_URL) -> Store:
        """Connect and bring the schema up to date (coordinator/migrations)."""
        engine = create_async_engine(url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_settings)
        async with engine.begin() as conn:
            await conn.run_sync(migrations.upgrade)

        return cls(engine)

    async def close(self) -> None:
        await self._intake.close()
        await self.engine.dispose()

    async def add_run(
        self,
        run: RunRecord,
        run_pairs: Iterable[PairRecord],
        run_chunks: Iterable[tuple[Assignment, int]],
        dst_slots: Mapping[str, int] | None = None,
    ) -> None:
        """Record a planned run with its pairs and chunks, all or nothing.

        Every chunk starts queued, with its share of its destination's budget
        (``dst_slots`` from ``budget.slots_by_dst``; counted here when not
        given).  Pairs and chunks are written as they come, in batches, so a
        run of any size is never held in memory whole.
        """
        if dst_slots is None:
            run_chunks = list(run_chunks)
            dst_slots = budget.slots_by_dst((a.src, a.dst) for a, _ in run_chunks)
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(runs).values(**_run_row(run)))
            await _insert_many(
                conn, pairs, _PAIR_COLUMNS, _pair_rows(run.id, run_pairs)
            )
            await _insert_many(
                conn, chunks, _CHUNK_COLUMNS, _chunk_rows(run.id, run_chunks, dst_slots)
            )

    async def add_result(
        self,
        result: Result,
        body: bytes,
        key_id: str | None = None,
        signature: bytes | None = None,
    ) -> Intake:
        """Store a result once per chunk and say what became of it.

        Results are keyed by assignment.  The first for a chunk of an unfinished
        run is stored and counted, filed under the chunk's own run whatever run
        the sender named.  The same bytes again are a ``DUPLICATE``.  Different
        bytes for a chunk that already has its result (a redelivered chunk run
        twice), or any result for a finished run, are kept apart as late
        evidence, never counted, and also answered ``DUPLICATE`` so that the
        agent stops re-sending.  ``key_id`` and ``signature`` record which agent
        key signed ``body``.
        """
        started = time.perf_counter()
        intake = await self._intake.submit(Posted(result, body, key_id, signature))
        metrics.INTAKE_SECONDS.observe(time.perf_counter() - started)

        return intake

    async def add_results(self, posts: Sequence[Posted]) -> list[Intake]:
        """File a batch of posts in one transaction (see ``add_result``)."""
        async with self.engine.begin() as conn:
            outcomes = await _file(conn, posts, time.time())
        findings = sum(
            len(post.result.findings)
            for post, outcome in zip(posts, outcomes, strict=True)
            if outcome == Intake.STORED
        )
        metrics.count_intake(outcomes, findings)

        return [Intake.DUPLICATE if o == LATE else Intake(o) for o in outcomes]

    async def run(self, run_id: str) -> RunRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(runs).where(runs.c.id == run_id))
            ).first()

        return _run_record(row) if row else None

    async def latest_run(self, kind: str | None = None) -> RunRecord | None:
        query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(1)
        if kind:
            query = query.where(runs.c.kind == kind)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()

        return _run_record(row) if row else None

    async def runs(self, limit: int = 50) -> list[RunRecord]:
        query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return [_run_record(row) for row in rows]

    async def unfinished_runs(self) -> list[RunRecord]:
        query = sa.select(runs).where(runs.c.finished_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return [_run_record(row) for row in rows]

    async def pairs(self, run_id: str) -> list[PairRecord]:
        query = sa.select(pairs).where(pairs.c.run_id == run_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return [
            PairRecord(
                r.src, r.dst, r.expect, json.loads(r.allowed) if r.allowed else None
            )
            for r in rows
        ]

    async def chunks(self, run_id: str) -> list[ChunkRecord]:
        query = sa.select(chunks).where(chunks.c.run_id == run_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return [
            ChunkRecord(
                r.id,
                r.src,
                r.dst,
                r.probes,
                r.state,
                codec.decode(r.assignment, Assignment),
                r.dead_reason,
            )
            for r in rows
        ]

    async def chunk_counts(self, run_id: str) -> dict[str, int]:
        """How many of the run's chunks are in each state."""
        query = (
            sa.select(chunks.c.state, sa.func.count())
            .where(chunks.c.run_id == run_id)
            .group_by(chunks.c.state)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return {state: n for state, n in rows}

    async def results(self, run_id: str) -> list[Result]:
        query = sa.select(results.c.body).where(results.c.run_id == run_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()

        return [codec.decode(row.body, Result) for row in rows]

    async def finish_run(
        self, run_id: str, verdict: str, report: dict[str, Any], at: float
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(finished_at=at, verdict=verdict, report=json.dumps(report))
            )

    async def touch_agent(
        self, agent_id: str, subnet: str, at: float, assignment_id: str | None
    ) -> None:
        """Record a heartbeat."""
        async with self.engine.begin() as conn:
            updated = await conn.execute(
                sa.update(agents)
                .where(agents.c.id == agent_id)
                .values(subnet=subnet, last_seen=at, assignment_id=assignment_id)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    sa.insert(agents).values(
                        id=agent_id,
                        subnet=subnet,
                        last_seen=at,
                        assignment_id=assignment_id,
                    )
                )

    async def agents(self) -> list[AgentRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(agents))).all()

        return [AgentRecord(r.id, r.subnet, r.last_seen, r.assignment_id) for r in rows]


@dataclass(frozen=True)
class Posted:
    """One result post, as the intake verified it."""

    result: Result
    body: bytes
    key_id: str | None = None
    signature: bytes | None = None

    @functools.cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


LATE = "late"  # an outcome of filing that the agent is told is a duplicate


async def _file(
    conn: AsyncConnection, posts: Sequence[Posted], now: float
) -> list[str]:
    """Store, refuse or set aside each of ``posts``; one outcome each, in order."""
    ids = sorted({post.result.assignment_id for post in posts})
    query = (
        sa.select(chunks.c.id, chunks.c.src, chunks.c.state, chunks.c.run_id)
        .add_columns(runs.c.finished_at)
        .join(runs, runs.c.id == chunks.c.run_id)
        .where(chunks.c.id.in_(_padded(ids)))
    )
    found = {row.id: row for row in await conn.execute(query)}

    # The first post for each open chunk claims it, unless another coordinator
    # task claimed it first: the conditional UPDATE decides.
    claims: dict[str, int] = {}
    for index, post in enumerate(posts):
        row = found.get(post.result.assignment_id)
        if row is not None and _claimable(row, post.result.src):
            claims.setdefault(row.id, index)
    won = await _claim(conn, list(claims), now)
    if won:
        rows = [_result_row(posts[claims[i]], found[i].run_id, now) for i in won]
        await _insert_many(conn, results, _RESULT_COLUMNS, rows)

    outcomes: list[str] = []
    for index, post in enumerate(posts):
        row = found.get(post.result.assignment_id)
        if row is None:
            outcomes.append(Intake.UNKNOWN)
        elif row.src != post.result.src:
            outcomes.append(Intake.WRONG_SUBNET)
        elif claims.get(row.id) == index and row.id in won:
            outcomes.append(Intake.STORED)
        else:
            outcomes.append(LATE)
    await _set_aside(conn, posts, outcomes, found, now)

    return outcomes


def _padded(ids: list[str]) -> list[str]:
    """``ids`` with the last repeated up to the next power of two.

    ``IN`` takes one placeholder per value, so each batch size is another
    statement to the driver: asyncpg would prepare (a round trip, and a plan
    on the server) and cache one for each of up to ``MAX_BATCH`` sizes on
    every pooled connection.  Padded, a handful of statements serve them all.
    """
    size = 1 << max(0, len(ids) - 1).bit_length()

    return ids + ids[-1:] * (size - len(ids))


def _claimable(row: sa.Row[Any], src: str) -> bool:
    return bool(
        row.src == src and row.state != ChunkState.DONE and row.finished_at is None
    )


async def _claim(conn: AsyncConnection, ids: list[str], now: float) -> set[str]:
    if not ids:
        return set()
    open_runs = sa.select(runs.c.id).where(runs.c.finished_at.is_(None))
    claimed = await conn.execute(
        sa.update(chunks)
        .where(
            chunks.c.id.in_(_padded(ids)),
            chunks.c.state != ChunkState.DONE,
            chunks.c.run_id.in_(open_runs),
        )
        .values(state=ChunkState.DONE, settled_at=now)
        .returning(chunks.c.id)
    )

    return set(claimed.scalars())


async def _set_aside(
    conn: AsyncConnection,
    posts: Sequence[Posted],
    outcomes: list[str],
    found: dict[str, sa.Row[Any]],
    now: float,
) -> None:
    """Tell copies from late results; keep each late result once, as evidence."""
    later = [i for i, outcome in enumerate(outcomes) if outcome == LATE]
    if not later:
        return
    ids = sorted({posts[i].result.assignment_id for i in later})
    known: set[tuple[str, str]] = set()
    for table in (results, late_results):
        query = sa.select(table.c.assignment_id, table.c.digest).where(
            table.c.assignment_id.in_(_padded(ids))
        )
        known.update(
            (row.assignment_id, row.digest) for row in await conn.execute(query)
        )
    kept = []
    for index in later:
        post = posts[index]
        key = (post.result.assignment_id, post.digest)
        if key in known:
            outcomes[index] = Intake.DUPLICATE
            continue
        known.add(key)
        kept.append(_result_row(post, found[key[0]].run_id, now))
    await _insert_many(conn, late_results, _RESULT_COLUMNS, kept)


_RESULT_COLUMNS = (
    "assignment_id", "run_id", "agent", "received_at", "body", "key_id",
    "signature", "digest",
)  # fmt: skip


def _result_row(post: Posted, run_id: str, now: float) -> tuple[Any, ...]:
    """A row of ``results`` or ``late_results``, in ``_RESULT_COLUMNS`` order."""
    return (
        post.result.assignment_id, run_id, post.result.agent, now, post.body,
        post.key_id, post.signature, post.digest,
    )  # fmt: skip


# A planned run writes hundreds of thousands of rows into indexes keyed at
# random: with SQLite's default 2 MB page cache each batch re-reads its pages.
SQLITE_CACHE_KIB = 64 * 1024


def _sqlite_settings(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    cursor.close()


INSERT_BATCH = 5_000
_PAIR_COLUMNS = ("run_id", "src", "dst", "expect", "allowed")
_CHUNK_COLUMNS = (
    "id", "run_id", "src", "dst", "probes", "state", "assignment", "budget_pps",
    "rate_pps",
)  # fmt: skip


async def _insert_many(
    conn: AsyncConnection,
    table: sa.Table,
    columns: tuple[str, ...],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """Insert ``rows``, tuples in ``columns`` order, a batch at a time."""
    await execute_many(conn, _insert(table, columns), columns, rows)


# Every batch of result posts inserts into the same tables: the statements,
# and their compiled forms below, are made once.
@functools.cache
def _insert(table: sa.Table, columns: tuple[str, ...]) -> sa.Insert:
    return sa.insert(table).values({c: sa.bindparam(c) for c in columns})


async def execute_many(
    conn: AsyncConnection,
    statement: sa.Insert | sa.Update,
    names: tuple[str, ...],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """Run ``statement`` for each of ``rows``, tuples of the values of its bound
    parameters ``names`` in that order, a batch at a time.

    Straight to the driver's executemany: a planned run has hundreds of
    thousands of rows, and building a dict per row and binding it through
    SQLAlchemy cost more than the database's own work.
    """
    sql, places = _compiled(statement, names, conn.dialect)
    if places is not None:
        rows = (tuple(row[i] if i >= 0 else v for i, v in places) for row in rows)
    rows = iter(rows)
    while batch := list(itertools.islice(rows, INSERT_BATCH)):
        await conn.exec_driver_sql(sql, batch)


_Places = tuple[tuple[int, Any], ...]


@functools.lru_cache(maxsize=64)
def _compiled(
    statement: sa.Insert | sa.Update, names: tuple[str, ...], dialect: sa.Dialect
) -> tuple[str, _Places | None]:
    """The statement's SQL for ``dialect``, and where each of its positional
    parameters comes from: (index in ``names``, None), or (-1, a value fixed in
    the statement); None when they are simply ``names`` in order."""
    compiled = statement.compile(dialect=dialect)
    # Both drivers (aiosqlite, asyncpg) take positional parameters, in the
    # statement's order; values fixed in the statement are filled in here.
    assert compiled.positiontup is not None
    places = tuple(
        (names.index(name), None) if name in names else (-1, compiled.params[name])
        for name in compiled.positiontup
    )
    in_order = places == tuple((i, None) for i in range(len(names)))

    return str(compiled), None if in_order else places


def _pair_rows(
    run_id: str, run_pairs: Iterable[PairRecord]
) -> Iterator[tuple[Any, ...]]:
    # The pairs of one rule share their ``allowed``: each is encoded once, and
    # held, so that its id cannot be reused by another while this runs.
    encoded: dict[int, tuple[dict[str, Any], str]] = {}
    for pair in run_pairs:
        text = None
        if pair.allowed:
            key = id(pair.allowed)
            if key not in encoded:
                encoded[key] = (pair.allowed, json.dumps(pair.allowed))
            text = encoded[key][1]
        yield (run_id, pair.src, pair.dst, pair.expect, text)


def _chunk_rows(
    run_id: str,
    run_chunks: Iterable[tuple[Assignment, int]],
    dst_slots: Mapping[str, int],
) -> Iterator[tuple[Any, ...]]:
    shares: dict[tuple[str, int], budget.Share] = {}
    for assignment, probes in run_chunks:
        key = (assignment.dst, assignment.rate_pps)
        if key not in shares:
            shares[key] = budget.share(assignment, dst_slots)
        share = shares[key]
        yield (
            assignment.id, run_id, assignment.src, assignment.dst, probes,
            str(ChunkState.QUEUED), codec.encode(assignment), share.budget_pps,
            share.rate_pps,
        )  # fmt: skip


def _run_row(run: RunRecord) -> dict[str, Any]:
    row = dict(run.__dict__)
    row["report"] = json.dumps(run.report) if run.report else None

    return row


def _run_record(row: sa.Row[Any]) -> RunRecord:
    data = row._asdict()
    data["report"] = json.loads(data["report"]) if data["report"] else None

    return RunRecord(**data)
