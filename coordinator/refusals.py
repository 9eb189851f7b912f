"""Refusals agents report, kept as security events and shown in run reports.

A refusal names the assignment only when the agent could verify the
coordinator's signature on it; the coordinator then checks whether it issued
that assignment to that subnet.  One it never issued, yet signed with its key,
means the signing key is in someone else's hands.  A run's report lists the
refusals of its own assignments and every other refusal its source agents
reported while it ran: an unverifiable message cannot be tied to a chunk, and
a replayed one belongs to an older run, yet both happened during this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import structlog

from coordinator.store import RunRecord, Store
from coordinator.tables import chunks, refusals
from protocol.messages import Refusal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RefusalRecord:
    """One stored refusal; ``issued`` is None when it named no assignment."""

    received_at: float
    subnet: str
    agent: str
    key_id: str
    reason: str
    detail: str
    message_id: str
    assignment_id: str | None
    issued: bool | None
    run_id: str | None


async def record(
    store: Store, refusal: Refusal, key_id: str, envelope: bytes, at: float
) -> RefusalRecord:
    """Store ``refusal`` as signed by ``key_id`` and log it as a security event."""
    issued, run_id = await _issued(store, refusal)
    row = RefusalRecord(
        received_at=at,
        subnet=refusal.subnet,
        agent=refusal.agent,
        key_id=key_id,
        reason=str(refusal.reason),
        detail=refusal.detail,
        message_id=refusal.message_id,
        assignment_id=refusal.assignment_id,
        issued=issued,
        run_id=run_id,
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(refusals).values(**row.__dict__, envelope=envelope)
        )
    event = "assignment_forged" if issued is False else "assignment_refused"
    log.warning(event, security_event=True, **_fields(row))

    return row


async def _issued(store: Store, refusal: Refusal) -> tuple[bool | None, str | None]:
    """Whether we issued the named assignment to the refusing subnet, and its run."""
    if refusal.assignment_id is None:
        return None, None
    query = sa.select(chunks.c.run_id).where(
        chunks.c.id == refusal.assignment_id, chunks.c.src == refusal.subnet
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()

    return (True, row.run_id) if row else (False, None)


async def for_run(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    """The refusals a run's report lists, oldest first, as JSON-ready data."""
    sources = sorted({pair.src for pair in await store.pairs(run.id)})
    during = sa.and_(
        refusals.c.subnet.in_(sources), refusals.c.received_at >= run.created_at
    )
    if run.finished_at is not None:
        during = sa.and_(during, refusals.c.received_at <= run.finished_at)
    query = (
        sa.select(*(refusals.c[name] for name in RefusalRecord.__dataclass_fields__))
        .where(sa.or_(refusals.c.run_id == run.id, during))
        .order_by(refusals.c.received_at, refusals.c.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()

    return [_report_entry(RefusalRecord(**row._asdict())) for row in rows]


def _report_entry(row: RefusalRecord) -> dict[str, Any]:
    return {
        "received_at": datetime.fromtimestamp(row.received_at, UTC).isoformat(
            timespec="seconds"
        ),
        "subnet": row.subnet,
        "agent": row.agent,
        "key_id": row.key_id,
        "reason": row.reason,
        "detail": row.detail,
        "message_id": row.message_id,
        "assignment": row.assignment_id,
        "issued": row.issued,
    }


def _fields(row: RefusalRecord) -> dict[str, Any]:
    return {
        "subnet": row.subnet,
        "agent": row.agent,
        "key_id": row.key_id,
        "reason": row.reason,
        "detail": row.detail,
        "message_id": row.message_id,
        "assignment": row.assignment_id,
        "run": row.run_id,
    }
