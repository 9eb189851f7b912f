"""Telling the coordinator what the agent refused, so the run shows it.

Every refusal is posted as a signed ``Refusal`` notice and logged as the
security event ``assignment_rejected``.  When the assignment itself was
trusted (the coordinator's signature held) and the refusal settles its chunk
for good (outside the scope, expired, not yet valid, too long-lived), the agent
also posts a result with ``error`` set and no findings, so the pair turns
``inconclusive`` with the reason at once instead of waiting for the deadline.
A replay gets no such result: the original message carries the real one.
"""

from __future__ import annotations

import hashlib

import structlog

from agent.config import AgentConfig
from agent.errors import AssignmentError, CoordinatorError
from agent.queue import QueueMessage
from agent.sender import Sender
from protocol.messages import Coverage, Refusal, Refused, Result

log = structlog.get_logger(__name__)

SETTLING = frozenset(
    {
        Refused.NOT_YET_VALID,
        Refused.EXPIRED,
        Refused.LIFETIME,
        Refused.DESTINATION,
        Refused.PORT,
        Refused.RATE,
    }
)


def notice(
    config: AgentConfig, message: QueueMessage, exc: AssignmentError, now: float
) -> Refusal:
    """The refusal notice for ``message``; claims only what was verified."""
    assignment = exc.assignment

    return Refusal(
        agent=config.agent_id,
        subnet=config.subnet,
        message_id=message.message_id,
        body_sha256=hashlib.sha256(message.body.encode()).hexdigest(),
        reason=Refused(exc.reason),
        detail=exc.message,
        received_at=now,
        assignment_id=assignment.id if assignment else None,
        run_id=assignment.run_id if assignment else None,
    )


def settling_result(
    config: AgentConfig, exc: AssignmentError, now: float
) -> Result | None:
    """The error result that settles the refused chunk, when one should."""
    assignment = exc.assignment
    if assignment is None or exc.reason not in SETTLING:
        return None

    return Result(
        assignment_id=assignment.id,
        run_id=assignment.run_id,
        src=assignment.src,
        dst=assignment.dst,
        agent=config.agent_id,
        engine="none",
        started_at=now,
        finished_at=now,
        coverage=Coverage(0, 0, 0, 0),
        findings=(),
        error=f"refused: {exc.message}",
    )


async def report(
    sender: Sender,
    config: AgentConfig,
    message: QueueMessage,
    exc: AssignmentError,
    now: float,
) -> None:
    """Log the refusal as a security event and tell the coordinator."""
    assignment = exc.assignment
    log.warning(
        "assignment_rejected",
        security_event=True,
        reason=exc.reason,
        detail=exc.message,
        message_id=message.message_id,
        receive_count=message.receive_count,
        assignment=assignment.id if assignment else None,
        run=assignment.run_id if assignment else None,
    )
    try:
        await sender.post_refusal(notice(config, message, exc, now))
    except CoordinatorError as error:
        # The log line above stays the record; the message comes back later.
        log.warning("refusal_unreported", error=str(error))
    result = settling_result(config, exc, now)
    if result is None:
        return
    try:
        await sender.post_result(result)
    except CoordinatorError as error:
        # e.g. 404: an id the coordinator never issued, signed with its key.
        log.warning("refusal_result_unstored", error=str(error), status=error.status)
