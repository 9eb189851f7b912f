"""Durable state of runs, chunks, results and agents, through SQLAlchemy.

SQLite (aiosqlite) by default; the same code runs on PostgreSQL (asyncpg) when
the URL says so.  Results are stored as the agent's msgpack bytes, so what is
judged is exactly what was received.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from protocol import codec
from protocol.messages import Assignment, Result

DEFAULT_DB_URL = "sqlite+aiosqlite:///segscan.db"

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("base_run", sa.String(40)),
    sa.Column("policy_source", sa.Text, nullable=False),
    sa.Column("policy_text", sa.Text, nullable=False),
    sa.Column("policy_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("deadline", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("verdict", sa.String(16)),
    sa.Column("report", sa.Text),
)

pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("src", sa.String(128), primary_key=True),
    sa.Column("dst", sa.String(128), primary_key=True),
    sa.Column("expect", sa.String(16), nullable=False),
    sa.Column("allowed", sa.Text),
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("src", sa.String(128), nullable=False),
    sa.Column("dst", sa.String(128), nullable=False),
    sa.Column("probes", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("assignment", sa.LargeBinary, nullable=False),
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("assignment_id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False, index=True),
    sa.Column("agent", sa.String(256), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(256), primary_key=True),
    sa.Column("subnet", sa.String(128), nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("assignment_id", sa.String(40)),
)


class ChunkState(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"


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

    @classmethod
    async def open(cls, url: str = DEFAULT_DB_URL) -> Store:
        """Connect and create the tables that are missing."""
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def add_run(
        self,
        run: RunRecord,
        run_pairs: Sequence[PairRecord],
        run_chunks: Sequence[tuple[Assignment, int]],
    ) -> None:
        """Record a planned run with its pairs and chunks, all or nothing."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(runs).values(**_run_row(run)))
            await conn.execute(
                sa.insert(pairs),
                [
                    {
                        "run_id": run.id,
                        "src": p.src,
                        "dst": p.dst,
                        "expect": p.expect,
                        "allowed": json.dumps(p.allowed) if p.allowed else None,
                    }
                    for p in run_pairs
                ],
            )
            await conn.execute(
                sa.insert(chunks),
                [
                    {
                        "id": a.id,
                        "run_id": run.id,
                        "src": a.src,
                        "dst": a.dst,
                        "probes": probes,
                        "state": ChunkState.QUEUED,
                        "assignment": codec.encode(a),
                    }
                    for a, probes in run_chunks
                ],
            )

    async def add_result(self, result: Result, body: bytes) -> Intake:
        """Store a result once; a second copy of the same chunk's result is a no-op.

        The chunk is claimed with one conditional UPDATE, so two copies arriving
        together cannot both be stored; the result is filed under the chunk's
        own run, whatever run the sender named.
        """
        async with self.engine.begin() as conn:
            claimed = (
                await conn.execute(
                    sa.update(chunks)
                    .where(
                        chunks.c.id == result.assignment_id,
                        chunks.c.src == result.src,
                        chunks.c.state == ChunkState.QUEUED,
                    )
                    .values(state=ChunkState.DONE)
                    .returning(chunks.c.run_id)
                )
            ).first()
            if claimed is None:
                return await self._refusal(conn, result)
            await conn.execute(
                sa.insert(results).values(
                    assignment_id=result.assignment_id,
                    run_id=claimed.run_id,
                    agent=result.agent,
                    received_at=time.time(),
                    body=body,
                )
            )

        return Intake.STORED

    @staticmethod
    async def _refusal(conn: AsyncConnection, result: Result) -> Intake:
        query = sa.select(chunks.c.src).where(chunks.c.id == result.assignment_id)
        row = (await conn.execute(query)).first()
        if row is None:
            return Intake.UNKNOWN
        if row.src != result.src:
            return Intake.WRONG_SUBNET

        return Intake.DUPLICATE

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


def _run_row(run: RunRecord) -> dict[str, Any]:
    row = dict(run.__dict__)
    row["report"] = json.dumps(run.report) if run.report else None

    return row


def _run_record(row: sa.Row[Any]) -> RunRecord:
    data = row._asdict()
    data["report"] = json.loads(data["report"]) if data["report"] else None

    return RunRecord(**data)
