"""The ``agent run`` loop: take assignments from the queue, scan, post results.

A message is deleted only once the coordinator has answered 200 for its
result (DESIGN.md, "Delivery guarantees"); until then SQS hands it out again.
A message that is not a valid assignment for this agent now (undecodable,
addressed to another subnet, expired) is never scanned and never answered: it
is logged as the security event ``assignment_rejected`` and left on the queue
(hidden for a few minutes), so that the queue's redrive policy moves it to the
dead-letter queue, where it stays as evidence, after its maximum receive count.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, ip_network

import structlog

from agent.config import AgentConfig
from agent.engine import ScanOutcome, ScanRequest
from agent.engines import choose_engine
from agent.errors import AssignmentError, CoordinatorError, QueueError, ScanError
from agent.queue import MAX_WAIT_S, AssignmentQueue, QueueMessage
from agent.sender import Sender
from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import Assignment, Coverage, Heartbeat, Result, ScanKind
from protocol.ports import count

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 10.0
# A message in hand is hidden for VISIBILITY_S and renewed every third of it,
# so one failed renewal does not hand it to another receiver.
VISIBILITY_S = 120
MAX_TARGETS = 1 << 20  # a /12: more would not fit one chunk's memory or minutes
# A rejected message comes back this much later, not at the queue's default:
# one security event per message every few minutes until redrive takes it.
REJECTED_HIDE_S = 300
RETRY_FIRST_S = 1.0  # backoff while the queue cannot be reached
RETRY_MAX_S = 60.0


class Disposition(enum.StrEnum):
    """What became of one message."""

    DONE = "done"  # result stored by the coordinator, message deleted
    REJECTED = "rejected"  # not scanned; left for the dead-letter queue
    UNDELIVERED = "undelivered"  # result not accepted; message left to come back


def read_assignment(message: QueueMessage, subnet: str, now: float) -> Assignment:
    """The assignment in ``message``; raise ``AssignmentError`` unless it is
    well-formed, addressed to ``subnet`` and not expired at ``now``."""
    subject = f"message {message.message_id}"
    try:
        assignment = codec.decode(codec.from_text(message.body), Assignment)
    except ProtocolError as exc:
        raise AssignmentError(subject, "undecodable", str(exc)) from exc
    if assignment.src != subnet:
        raise AssignmentError(
            subject, "wrong-subnet", f"addressed to {assignment.src!r}, not {subnet!r}"
        )
    if assignment.expires_at < now:
        raise AssignmentError(
            subject, "expired", f"expired {now - assignment.expires_at:.0f} s ago"
        )

    return assignment


def expand_targets(
    cidrs: Iterable[str], exact: bool = False
) -> tuple[IPv4Address, ...]:
    """Every address of the IPv4 networks ``cidrs``, in order, once each.

    Unless ``exact`` (an assignment's targets, planned address by address), a
    network shorter than /31 loses its network and broadcast address.
    Raise ``ValueError`` naming an entry that is not an IPv4 address or
    network, or when there are more than ``MAX_TARGETS`` addresses.
    """
    networks: list[IPv4Network] = []
    for cidr in cidrs:
        network = ip_network(cidr.strip(), strict=False)
        if not isinstance(network, IPv4Network):
            raise ValueError(f"{cidr!r} is not an IPv4 address or network")
        networks.append(network)
    if sum(network.num_addresses for network in networks) > MAX_TARGETS:
        raise ValueError(f"more than {MAX_TARGETS} addresses; split the targets")
    addresses: dict[IPv4Address, None] = {}
    for network in networks:
        addresses.update(dict.fromkeys(network if exact else network.hosts()))

    return tuple(addresses)


def request_for(assignment: Assignment) -> ScanRequest:
    """The scan ``assignment`` asks for; raise ``ScanError`` on bad targets."""
    try:
        targets = expand_targets(assignment.targets, exact=True)
    except ValueError as exc:
        raise ScanError("assignment", f"bad targets: {exc}") from exc

    return ScanRequest(
        targets=targets,
        tcp=assignment.tcp,
        udp=assignment.udp,
        rate_pps=assignment.rate_pps,
        passes=assignment.passes,
    )


class Runner:
    """Works through one subnet's queue, one assignment at a time."""

    def __init__(
        self,
        config: AgentConfig,
        queue: AssignmentQueue,
        sender: Sender,
        *,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.queue = queue
        self.sender = sender
        self.heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self._current: str | None = None  # the assignment being worked on

    async def run(self) -> None:
        """Serve assignments and send heartbeats until cancelled."""
        heartbeats = asyncio.create_task(self._heartbeats())
        retry_s = RETRY_FIRST_S
        try:
            while True:
                try:
                    await self.run_once()
                except QueueError as exc:
                    log.warning("queue_unavailable", error=str(exc), retry_s=retry_s)
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, RETRY_MAX_S)
                else:
                    retry_s = RETRY_FIRST_S
        finally:
            heartbeats.cancel()
            await asyncio.wait({heartbeats})

    async def run_once(self, wait_s: int = MAX_WAIT_S) -> Disposition | None:
        """Take one message, if one comes within ``wait_s``, and settle it."""
        message = await self.queue.receive(wait_s)
        if message is None:
            return None

        return await self.handle(message)

    async def handle(self, message: QueueMessage) -> Disposition:
        """Check, scan and report one message; delete it once its result is in."""
        try:
            assignment = read_assignment(message, self.config.subnet, self._clock())
        except AssignmentError as exc:
            _log_rejected(message, exc)
            await self.queue.change_visibility(message, REJECTED_HIDE_S)
            return Disposition.REJECTED

        bound = log.bind(
            run=assignment.run_id,
            pair=f"{assignment.src}->{assignment.dst}",
            assignment=assignment.id,
        )
        started = time.monotonic()
        try:
            result = await self._work(message, assignment)
            status = await self.sender.post_result(result)
        except CoordinatorError as exc:
            bound.warning(
                "assignment_undelivered", error=str(exc), elapsed_s=_since(started)
            )
            return Disposition.UNDELIVERED
        except asyncio.CancelledError:
            await self._release(message)
            raise
        await self.queue.delete(message)

        log_at = bound.warning if result.error else bound.info
        log_at("assignment_done", elapsed_s=_since(started), **_summary(result, status))
        return Disposition.DONE

    async def _work(self, message: QueueMessage, assignment: Assignment) -> Result:
        """Scan while keeping ``message`` hidden and heartbeats naming the work."""
        keeper = asyncio.create_task(self._keep_hidden(message))
        self._current = assignment.id
        try:
            return await self._scan(assignment)
        finally:
            self._current = None
            keeper.cancel()
            await asyncio.wait({keeper})

    async def _scan(self, assignment: Assignment) -> Result:
        """The result of ``assignment``; a failure becomes the result's error."""
        kind = assignment.kind
        if kind is ScanKind.AUTO:
            kind = self.config.engine
        started_at = self._clock()
        try:
            request = request_for(assignment)
            engine = choose_engine(kind)
            outcome = await engine.scan(request)
            error = None
        except Exception as exc:  # a failed chunk is reported, never fatal
            if not isinstance(exc, ScanError):
                log.exception("scan_crashed", assignment=assignment.id)
            error = str(exc) if isinstance(exc, ScanError) else repr(exc)
            outcome = ScanOutcome(
                str(kind), (), Coverage(_planned(assignment), 0, 0, 0)
            )

        return Result(
            assignment_id=assignment.id,
            run_id=assignment.run_id,
            src=assignment.src,
            dst=assignment.dst,
            agent=self.config.agent_id,
            engine=outcome.engine,
            started_at=started_at,
            finished_at=self._clock(),
            coverage=outcome.coverage,
            findings=outcome.findings,
            error=error,
        )

    async def _keep_hidden(self, message: QueueMessage) -> None:
        while True:
            try:
                await self.queue.change_visibility(message, VISIBILITY_S)
            except QueueError as exc:
                log.warning("visibility_not_extended", error=str(exc))
            await asyncio.sleep(VISIBILITY_S / 3)

    async def _release(self, message: QueueMessage) -> None:
        """Hand ``message`` back to the queue at once: this agent is stopping."""
        with contextlib.suppress(QueueError):
            await self.queue.change_visibility(message, 0)
        log.info("assignment_abandoned", message_id=message.message_id)

    async def _heartbeats(self) -> None:
        while True:
            heartbeat = Heartbeat(
                agent=self.config.agent_id,
                subnet=self.config.subnet,
                sent_at=self._clock(),
                assignment_id=self._current,
            )
            try:
                await self.sender.post_heartbeat(heartbeat)
            except CoordinatorError as exc:
                log.warning("heartbeat_failed", error=str(exc))
            await asyncio.sleep(self.heartbeat_interval_s)


async def serve(config: AgentConfig) -> None:
    """Run the agent until SIGTERM or SIGINT; an assignment in hand goes back."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    log.info("agent_started", subnet=config.subnet, queue=config.queue_name)
    try:
        async with (
            AssignmentQueue.from_config(config) as queue,
            Sender(config.coordinator_url) as sender,
        ):
            await Runner(config, queue, sender).run()
    except asyncio.CancelledError:
        log.info("agent_stopped", subnet=config.subnet)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _planned(assignment: Assignment) -> int:
    try:
        targets = len(expand_targets(assignment.targets, exact=True))
    except ValueError:
        return 0

    return targets * (count(assignment.tcp) + count(assignment.udp))


def _log_rejected(message: QueueMessage, exc: AssignmentError) -> None:
    log.warning(
        "assignment_rejected",
        security_event=True,
        reason=exc.reason,
        detail=exc.message,
        message_id=message.message_id,
        receive_count=message.receive_count,
    )


def _since(started: float) -> float:
    """Seconds since the ``time.monotonic()`` reading ``started``, to the ms."""
    return round(time.monotonic() - started, 3)


def _summary(result: Result, status: str) -> dict[str, object]:
    summary: dict[str, object] = {
        "status": status,
        "engine": result.engine,
        "findings": len(result.findings),
        "planned": result.coverage.planned,
        "sent": result.coverage.sent,
        "answered": result.coverage.answered,
    }
    if result.error:
        summary["error"] = result.error

    return summary
