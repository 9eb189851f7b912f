"""The ``agent run`` loop: take assignments from the queue, scan, post results.

A message is deleted only once the coordinator has answered 200 for its
result (DESIGN.md, "Delivery guarantees"): from receipt until then it is held
(agent/lease.py), and its result, once scanned, waits in the spool on disk
(agent/spool.py) while agent/delivery.py re-sends it, so the agent goes on
with the next message when the coordinator is away.
A message the gate refuses (agent/verify.py: bad signature, expired, replayed,
outside the approved scope...) is never scanned: it is logged as the security
event ``assignment_rejected``, reported to the coordinator (agent/refusals.py)
and left on the queue (hidden for a few minutes), so that the queue's redrive
policy moves it to the dead-letter queue, where it stays as evidence, after
its maximum receive count.
"""

from __future__ import annotations

import asyncio
import enum
import signal
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, ip_network

import structlog

from agent import privilege, refusals
from agent.config import AgentConfig
from agent.delivery import Delivery
from agent.engine import ScanOutcome, ScanRequest
from agent.engines import choose_engine, raw_sockets_available
from agent.errors import AssignmentError, CoordinatorError, QueueError, ScanError
from agent.lease import Leases
from agent.queue import MAX_WAIT_S, AssignmentQueue, QueueMessage
from agent.sender import Sender
from agent.spool import Spool
from agent.verify import Gate, open_agent_signer
from agent.witness import Sightings, Witness, own_address
from protocol.messages import Assignment, Coverage, Heartbeat, Result, ScanKind
from protocol.ports import count

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 10.0
MAX_TARGETS = 1 << 20  # a /12: more would not fit one chunk's memory or minutes
RETRY_FIRST_S = 1.0  # backoff while the queue cannot be reached
RETRY_MAX_S = 60.0
# Messages held while their results wait for the coordinator: past this many
# the agent takes no new work, which would only pile up undeliverable too.
MAX_HELD = 32


class Disposition(enum.StrEnum):
    """What became of one message."""

    DONE = "done"  # result stored by the coordinator, message deleted
    REJECTED = "rejected"  # not scanned; left for the dead-letter queue
    UNDELIVERED = "undelivered"  # result spooled and its message held, not yet taken


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
        gate: Gate,
        *,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        witness: bool = False,
    ) -> None:
        self.config = config
        self.queue = queue
        self.sender = sender
        self.gate = gate
        self.heartbeat_interval_s = heartbeat_interval_s
        self._clock = clock
        self.witness = witness  # run one on this host's own address
        self._current: str | None = None  # the assignment being worked on
        self.spool = Spool(config.state_dir / "spool")
        self.leases = Leases(queue, config.state_dir / "leases", config.lease_s)
        self.delivery = Delivery(self.spool, sender, self.leases, clock)

    async def run(self) -> None:
        """Serve assignments, deliver the spool and send heartbeats until cancelled.

        First the leases and spool a previous process left are taken up.
        """
        await self.leases.restore(lambda a: self.spool.load(a) is not None)
        background = {
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self.delivery.run()),
        }
        if self.witness and (sightings := self._sightings()) is not None:
            background.add(asyncio.create_task(sightings.run()))
        retry_s = RETRY_FIRST_S
        try:
            while True:
                if self.leases.held >= MAX_HELD:
                    await asyncio.sleep(RETRY_FIRST_S)
                    continue
                try:
                    await self.run_once()
                except QueueError as exc:
                    log.warning("queue_unavailable", error=str(exc), retry_s=retry_s)
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, RETRY_MAX_S)
                else:
                    retry_s = RETRY_FIRST_S
        finally:
            for task in background:
                task.cancel()
            await asyncio.wait(background)
            await self.leases.close()

    async def run_once(self, wait_s: int = MAX_WAIT_S) -> Disposition | None:
        """Take one message, if one comes within ``wait_s``, and settle it."""
        message = await self.queue.receive(wait_s)
        if message is None:
            return None

        return await self.handle(message)

    async def handle(self, message: QueueMessage) -> Disposition:
        """Check, scan and report one message; delete it once its result is in."""
        try:
            assignment = self.gate.admit(message)
        except AssignmentError as exc:
            await refusals.report(self.sender, self.config, message, exc, self._clock())
            await self.queue.change_visibility(message, self.config.rejected_hide_s)
            return Disposition.REJECTED
        if self.spool.acked(assignment.id):
            # Stored before a crash lost the delete: delete, never scan again.
            await self.queue.delete(message)
            log.info("assignment_already_delivered", assignment=assignment.id)
            return Disposition.DONE

        bound = log.bind(
            run=assignment.run_id,
            pair=f"{assignment.src}->{assignment.dst}",
            assignment=assignment.id,
        )
        started = time.monotonic()
        await self.leases.hold(message, assignment.id, assignment.expires_at)
        try:
            result = self.spool.load(assignment.id) or await self._work(assignment)
        except asyncio.CancelledError:
            await self.leases.release(assignment.id)
            log.info("assignment_abandoned", message_id=message.message_id)
            raise
        self.spool.put(result)
        status = await self.delivery.deliver(result)
        if status is None:
            bound.warning("assignment_undelivered", elapsed_s=_since(started))
            return Disposition.UNDELIVERED

        log_at = bound.warning if result.error else bound.info
        log_at("assignment_done", elapsed_s=_since(started), **_summary(result, status))
        return Disposition.DONE

    async def _work(self, assignment: Assignment) -> Result:
        """Scan, with heartbeats naming the work."""
        self._current = assignment.id
        try:
            return await self._scan(assignment)
        finally:
            self._current = None

    async def _scan(self, assignment: Assignment) -> Result:
        """The result of ``assignment``; a failure becomes the result's error."""
        kind = assignment.kind
        if kind is ScanKind.AUTO:
            kind = self.config.engine
        started_at = self._clock()
        try:
            request = request_for(assignment)
            engine = choose_engine(kind, request.targets)
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

    def _sightings(self) -> Sightings | None:
        """The witness on this agent's own address, where this host allows one."""
        if not raw_sockets_available():
            log.warning("witness_unavailable", reason="needs root or CAP_NET_RAW")
            return None
        address = own_address(d.network for d in self.gate.scope.destinations)
        if address is None:
            log.warning("witness_unavailable", reason="no route to any destination")
            return None

        return Sightings(
            Witness(address),
            self.sender.post_sighting,
            self.config.agent_id,
            self.config.subnet,
        )

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
    privilege.check(config.allow_root)
    gate = Gate.from_config(config)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    log.info(
        "agent_started",
        subnet=config.subnet,
        queue=config.queue_name,
        scope=gate.scope.source,
    )
    try:
        async with (
            open_agent_signer(config) as signer,
            AssignmentQueue.from_config(config) as queue,
            Sender(config.coordinator_url, signer=signer) as sender,
        ):
            await Runner(config, queue, sender, gate, witness=config.witness).run()
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
