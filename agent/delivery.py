"""Delivery: results go from the spool to the coordinator until it has them.

A result is posted once as soon as it is spooled; if the coordinator cannot
be reached or answers with a server error, the delivery loop re-sends it with
a backoff per result that doubles from one second to a minute, jittered so a
fleet of agents does not return in step after an outage.  Acknowledged, the
result's message is deleted (agent/lease.py).  Refused for good (an
assignment the coordinator does not know, a result from the wrong subnet),
it is set aside in the spool and its message deleted: sending it again could
never succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import structlog

from agent.errors import CoordinatorError
from agent.lease import Leases
from agent.sender import Sender
from agent.spool import Spool
from protocol.messages import Result

log = structlog.get_logger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
JITTER = 0.2
IDLE_S = 5.0  # how often the loop looks at the spool when nothing wakes it
ACK_KEEP_S = 7200.0  # an acknowledgement's life when the lease's expiry is unknown
# Answers that will not change however often the result is sent (coordinator
# intake): a bad body, an unknown assignment, the wrong subnet, too large.
PERMANENT = frozenset({400, 404, 409, 413, 422})


class Delivery:
    """Sends what the spool holds; one instance per agent."""

    def __init__(
        self,
        spool: Spool,
        sender: Sender,
        leases: Leases,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.sender = sender
        self.leases = leases
        self._clock = clock
        self._due: dict[str, tuple[float, float]] = {}  # id -> (monotonic, delay)
        self._wake = asyncio.Event()

    async def deliver(self, result: Result) -> str | None:
        """Post ``result`` now: the coordinator's status, or None if it must wait."""
        assignment_id = result.assignment_id
        try:
            status = await self.sender.post_result(result)
        except CoordinatorError as exc:
            if exc.status in PERMANENT:
                await self._refused(assignment_id, exc)
                return None
            self._later(assignment_id, exc)
            return None
        self._due.pop(assignment_id, None)
        expires_at = self.leases.expiry(assignment_id)
        self.spool.ack(assignment_id, expires_at or self._clock() + ACK_KEEP_S)
        await self.leases.settle(assignment_id)

        return status

    async def run(self) -> None:
        """Re-send what waits, each result on its own backoff, until cancelled."""
        while True:
            now = time.monotonic()
            for assignment_id in self.spool.pending():
                if self._due.get(assignment_id, (0.0, 0.0))[0] > now:
                    continue
                result = self.spool.load(assignment_id)
                if result is not None and await self.deliver(result):
                    log.info("result_delivered_late", assignment=assignment_id)
            self.spool.prune(self._clock())
            await self._sleep()

    def _later(self, assignment_id: str, exc: CoordinatorError) -> None:
        _, delay_s = self._due.get(assignment_id, (0.0, RETRY_FIRST_S / 2))
        delay_s = min(delay_s * 2, RETRY_MAX_S)
        jittered = delay_s * random.uniform(1 - JITTER, 1 + JITTER)
        self._due[assignment_id] = (time.monotonic() + jittered, delay_s)
        self._wake.set()
        log.warning(
            "result_spooled",
            assignment=assignment_id,
            error=str(exc),
            retry_in_s=round(jittered, 1),
        )

    async def _refused(self, assignment_id: str, exc: CoordinatorError) -> None:
        self._due.pop(assignment_id, None)
        self.spool.refuse(assignment_id)
        await self.leases.settle(assignment_id)
        log.error("result_refused", assignment=assignment_id, error=str(exc))

    async def _sleep(self) -> None:
        now = time.monotonic()
        soonest = min((due for due, _ in self._due.values()), default=now + IDLE_S)
        self._wake.clear()
        timeout_s = min(IDLE_S, max(0.05, soonest - now))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
