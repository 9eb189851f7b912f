"""The connect-scan engine: asyncio ``connect()`` probes, for hosts without raw sockets.

Design note.  Probes are numbered target-major (each target's TCP ports, then
its UDP ports) and held in two compact arrays: the shuffled order (4 bytes a
probe) and each probe's outcome (1 byte), so a chunk of a few million probes
costs tens of megabytes; a larger request is refused with ``ScanError`` rather
than built.  One dispatcher walks the order, waits for a slot of the concurrency
semaphore, then for the rate limiter, and starts the probe in a TaskGroup.
Each later pass re-probes only the silent probes, in a fresh random order.

The kernel does the classifying: a completed handshake is open, ECONNREFUSED
is a RST (or, for UDP, an ICMP port unreachable), EHOSTUNREACH/ENETUNREACH an
ICMP unreachable (Linux maps "administratively prohibited" to EHOSTUNREACH too)
and EACCES/EPERM a firewall refusing the packet.  These errors also come from
the scanning host itself (no route, failed ARP, its own firewall), which a
connect scan cannot tell apart; the SYN engine can.

UDP silence proves nothing.  A silent UDP port is reported ``open|filtered``
only on an address that proved reachable (open or closed) in the same scan;
elsewhere it counts, like TCP silence, in coverage only.
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
import socket
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.engine import FindingsBuilder, ProgressCallback, ScanOutcome, ScanRequest
from agent.errors import ScanError
from protocol.messages import Coverage, Finding, PortState, Proto, Reason
from protocol.ports import expand

DEFAULT_CONCURRENCY = 256
MAX_PROBES = 4_000_000
BURST_S = 0.02  # how far the rate limiter lets the dispatcher catch up

# A probe's status: not sent yet, sent without an answer, or an answer code.
_UNSENT = 0
_SILENT = 1
_ANSWERS: tuple[tuple[PortState, Reason], ...] = (
    (PortState.OPEN, Reason.CONNECTED),
    (PortState.CLOSED, Reason.REFUSED),
    (PortState.OPEN, Reason.UDP_REPLY),
    (PortState.CLOSED, Reason.PORT_UNREACHABLE),
    (PortState.PROHIBITED, Reason.HOST_UNREACHABLE),
    (PortState.PROHIBITED, Reason.NET_UNREACHABLE),
    (PortState.PROHIBITED, Reason.ADMIN_PROHIBITED),
)
_FIRST_ANSWER = 2
_CODE = {answer: code for code, answer in enumerate(_ANSWERS, start=_FIRST_ANSWER)}

_ERRNO_ANSWERS = {
    errno.EHOSTUNREACH: (PortState.PROHIBITED, Reason.HOST_UNREACHABLE),
    errno.EHOSTDOWN: (PortState.PROHIBITED, Reason.HOST_UNREACHABLE),
    errno.ENETUNREACH: (PortState.PROHIBITED, Reason.NET_UNREACHABLE),
    errno.EACCES: (PortState.PROHIBITED, Reason.ADMIN_PROHIBITED),
    errno.EPERM: (PortState.PROHIBITED, Reason.ADMIN_PROHIBITED),
}

# Services answer only datagrams they understand: a DNS query for the root's
# NS records (RFC 1035 4.1) and an NTPv4 client request (RFC 5905 7.3).  Other
# ports get a short datagram naming the scanner, so a packet capture explains
# itself; an empty one would be ignored by many responders.
_UDP_DEFAULT_PAYLOAD = b"segscan\n"
_UDP_PAYLOADS = {
    53: bytes.fromhex("5353010000010000000000000000020001"),
    123: b"\x23" + bytes(47),
}

# Close with RST instead of FIN: a scan must not leave thousands of sockets in
# TIME_WAIT holding the ephemeral ports the next probes need.
_LINGER_RESET = struct.pack("ii", 1, 0)


class RateLimiter:
    """A token bucket written as GCRA: send slots ``1/rate`` apart, small bursts.

    Each caller reserves the next free slot synchronously, so concurrent
    waiters never share a token and need no lock.
    """

    def __init__(
        self, rate_per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = 1.0 / rate_per_s
        self._clock = clock
        self._next = -math.inf

    def reserve(self) -> float:
        """Take the next send slot; return how many seconds until it comes."""
        now = self._clock()
        slot = max(self._next, now - BURST_S)
        self._next = slot + self._interval_s

        return max(0.0, slot - now)

    async def wait(self) -> None:
        """Return when the next send slot has come."""
        delay_s = self.reserve()
        if delay_s > 0:
            await asyncio.sleep(delay_s)


@dataclass(frozen=True)
class _Plan:
    """Every probe of a request, numbered without being listed."""

    ips: tuple[str, ...]
    ports: tuple[int, ...]  # TCP ports, then UDP ports
    tcp_count: int

    @classmethod
    def of(cls, request: ScanRequest) -> _Plan:
        tcp, udp = tuple(expand(request.tcp)), tuple(expand(request.udp))
        return cls(tuple(map(str, request.targets)), tcp + udp, len(tcp))

    @property
    def size(self) -> int:
        return len(self.ips) * len(self.ports)

    def proto(self, slot: int) -> Proto:
        """The protocol of the ``slot``-th port of a target."""
        return Proto.TCP if slot < self.tcp_count else Proto.UDP


@dataclass
class _State:
    """What one scan has learnt so far."""

    plan: _Plan
    timeout_s: float
    limiter: RateLimiter
    progress: ProgressCallback | None
    status: bytearray
    reachable: set[int] = field(default_factory=set)  # targets that answered
    sent: int = 0
    dropped: int = 0  # probes the local kernel would not send
    done: int = 0

    def record(self, index: int, code: int) -> None:
        if code == _UNSENT:
            self.dropped += 1
            return
        if self.status[index] == _UNSENT:
            self.sent += 1
        self.status[index] = code
        if code >= _FIRST_ANSWER and _ANSWERS[code - _FIRST_ANSWER][0].reachable:
            self.reachable.add(index // len(self.plan.ports))
        self.done += 1
        if self.progress is not None and self.done % 256 == 0:
            self.progress(self.sent, self.plan.size)


@dataclass
class ConnectEngine:
    """Scans with ordinary sockets: no privilege needed, TCP and UDP."""

    concurrency: int = DEFAULT_CONCURRENCY
    name: str = field(default="connect", init=False)

    async def scan(
        self, request: ScanRequest, progress: ProgressCallback | None = None
    ) -> ScanOutcome:
        """Probe every (target, port) of ``request``; report what answered."""
        plan = self._plan(request)
        state = _State(
            plan=plan,
            timeout_s=request.timeout_s,
            limiter=RateLimiter(request.rate_pps),
            progress=progress,
            status=bytearray(plan.size),
        )
        passes = 0
        pending = array("I", range(plan.size))
        while pending and passes < request.passes:
            random.shuffle(pending)
            await self._run_pass(state, pending)
            passes += 1
            pending = array("I", (i for i in pending if state.status[i] <= _SILENT))
        if progress is not None:
            progress(state.sent, plan.size)

        return ScanOutcome(self.name, _findings(state), _coverage(state, passes))

    def _plan(self, request: ScanRequest) -> _Plan:
        if request.rate_pps < 1 or request.passes < 1 or request.timeout_s <= 0:
            raise ScanError(
                self.name,
                f"rate {request.rate_pps} pps, {request.passes} passes and timeout "
                f"{request.timeout_s} s: each must be positive",
            )
        plan = _Plan.of(request)
        if plan.size > MAX_PROBES:
            raise ScanError(
                self.name,
                f"{plan.size} probes is over the {MAX_PROBES} one connect scan "
                "plans at once; ask for fewer targets or ports",
            )

        return plan

    async def _run_pass(self, state: _State, order: array[int]) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group:
            for index in order:
                await slots.acquire()
                await state.limiter.wait()
                group.create_task(self._probe(state, index, slots))

    async def _probe(self, state: _State, index: int, slots: asyncio.Semaphore) -> None:
        try:
            target, slot = divmod(index, len(state.plan.ports))
            ip, port = state.plan.ips[target], state.plan.ports[slot]
            if state.plan.proto(slot) is Proto.TCP:
                code = await _probe_tcp(ip, port, state.timeout_s)
            else:
                code = await _probe_udp(ip, port, state.timeout_s)
            state.record(index, code)
        finally:
            slots.release()


async def _probe_tcp(ip: str, port: int, timeout_s: float) -> int:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return _UNSENT
    with sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.get_running_loop().sock_connect(sock, (ip, port))
        except TimeoutError:  # ours, or the kernel's ETIMEDOUT
            return _SILENT
        except OSError as exc:
            return _classify(exc, Proto.TCP)

    return _CODE[PortState.OPEN, Reason.CONNECTED]


async def _probe_udp(ip: str, port: int, timeout_s: float) -> int:
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return _UNSENT
    with sock:
        sock.setblocking(False)
        try:
            # A connected UDP socket is told of the ICMP errors its peer causes.
            sock.connect((ip, port))
            sock.send(_UDP_PAYLOADS.get(port, _UDP_DEFAULT_PAYLOAD))
            async with asyncio.timeout(timeout_s):
                await asyncio.get_running_loop().sock_recv(sock, 2048)
        except TimeoutError:
            return _SILENT
        except OSError as exc:
            return _classify(exc, Proto.UDP)

    return _CODE[PortState.OPEN, Reason.UDP_REPLY]


def _classify(exc: OSError, proto: Proto) -> int:
    """The answer an error stands for, or ``_UNSENT`` for a local failure."""
    if exc.errno == errno.ECONNREFUSED:
        reason = Reason.REFUSED if proto is Proto.TCP else Reason.PORT_UNREACHABLE
        return _CODE[PortState.CLOSED, reason]
    answer = _ERRNO_ANSWERS.get(exc.errno or 0)

    return _UNSENT if answer is None else _CODE[answer]


def _findings(state: _State) -> tuple[Finding, ...]:
    builder = FindingsBuilder()
    plan, width = state.plan, len(state.plan.ports)
    for target, ip in enumerate(plan.ips):
        row = state.status[target * width : (target + 1) * width]
        if max(row, default=_UNSENT) < _FIRST_ANSWER:
            continue  # silence everywhere: it counts in coverage only
        for slot, code in enumerate(row):
            proto, port = plan.proto(slot), plan.ports[slot]
            if code >= _FIRST_ANSWER:
                builder.add(ip, proto, port, *_ANSWERS[code - _FIRST_ANSWER])
            elif proto is Proto.UDP and target in state.reachable:
                builder.add(
                    ip, proto, port, PortState.OPEN_FILTERED, Reason.NO_RESPONSE
                )

    return builder.build()


def _coverage(state: _State, passes: int) -> Coverage:
    """Counts of distinct probes: sent at least once, answered in some pass.

    ``passes`` is how many ran (fewer than asked once nothing is silent);
    ``dropped`` counts every attempt the local kernel refused to send.
    """
    silent = state.status.count(_SILENT)
    return Coverage(
        planned=state.plan.size,
        sent=state.sent,
        answered=state.sent - silent,
        passes=passes,
        dropped=state.dropped,
    )
