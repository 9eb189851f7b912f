"""The SYN engine: TCP SYN and UDP probes from a packet socket, at a held rate,
in random order, with every reply proven by its cookie.

Design note: the scan runs in a worker thread so the agent's event loop stays
free; a second thread receives (``replies``).  Each pass visits every
unanswered (address, port) once, in a fresh random order (``permutation``),
patched a batch at a time into prepared frames (``frames``) and written with
one ``sendmmsg`` per few dozen frames, paced by a token bucket (``bucket``).
Memory stays flat: an answer byte and a TTL byte per port of an address that
answered, nothing per probe otherwise.

The kernel has no socket for our SYNs, so it answers each SYN-ACK with a RST.
We let it: the RST tears down the half-open connection on the target (as it
does for nmap), and keeping it needs no firewall rule on the agent's host.  The
source port is held by a bound, never-listening TCP socket so no local program
is given it meanwhile; a bound UDP socket on the same port keeps the kernel
from answering UDP replies with port-unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import structlog

from agent import frames, nexthop, rawsock, udp
from agent.bpf import reply_filter
from agent.bucket import for_rate
from agent.cookie import CookieKey, big_endian
from agent.engine import ProgressCallback, ScanOutcome, ScanRequest
from agent.errors import ScanError
from agent.permutation import Batch, PassOrder
from agent.replies import ProbeTable, Receiver
from agent.synreport import Accounting, findings
from protocol.messages import Proto, Reason
from protocol.ports import expand

log = structlog.get_logger(__name__)

BATCH_SLOTS = 1024
SEND_CHUNK = 64  # frames per sendmmsg at full speed: about 0.2 ms of wire
UDP_SLOTS = 64
UDP_SLOT_BYTES = 512
PROGRESS_EVERY_S = 0.25
# Between passes, let the last probes' replies land so they are not re-sent; a
# late reply only costs a duplicate probe, so this need not be the full timeout.
SETTLE_S = 0.2


def raw_sockets_available() -> bool:
    """Whether this process may run the SYN engine (root or CAP_NET_RAW)."""
    return rawsock.raw_sockets_available()


def own_addresses(targets: Iterable[IPv4Address]) -> list[IPv4Address]:
    """The targets that are this host's own addresses (they route by loopback),
    which the SYN engine cannot probe."""
    return [
        target
        for target, route in nexthop.routes(targets).items()
        if nexthop.is_loopback(route.interface)
    ]


@dataclass(frozen=True)
class SynOutcome(ScanOutcome):
    """A scan's outcome with the SYN engine's own accounting."""

    accounting: Accounting


class SynEngine:
    """Scans from raw packet sockets; needs root or CAP_NET_RAW."""

    name = "syn"

    async def scan(
        self, request: ScanRequest, progress: ProgressCallback | None = None
    ) -> SynOutcome:
        """Probe every (target, port) of ``request``; report what answered."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def report(sent: int, planned: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, sent, planned)

        try:
            return await asyncio.to_thread(SynScan(request, report, stop).run)
        except asyncio.CancelledError:
            stop.set()  # the worker thread notices within one batch
            raise


@dataclass
class _Counts:
    sent: int = 0
    frames: int = 0
    passes: int = 0
    send_s: float = 0.0
    unsent: int = 0
    tx_dropped: int = 0
    rx_dropped: int = 0
    rejected: int = 0
    interfaces: list[str] = field(default_factory=list)


@dataclass
class _Link:
    """One egress interface's sockets and targets during a scan."""

    interface: str
    source: IPv4Address
    members: list[int]  # indexes of the targets probed through it
    macs: dict[int, bytes]  # next-hop hardware address per target index
    template: frames.SynTemplate
    sender: rawsock.BatchSender
    udp_sender: rawsock.BatchSender
    batch: frames.SynBatch


class SynScan:
    """One blocking scan; ``run`` returns its outcome."""

    def __init__(
        self,
        request: ScanRequest,
        progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.request = request
        self.targets = list(dict.fromkeys(request.targets))
        self.tcp_ports = list(expand(request.tcp))
        self.udp_ports = list(expand(request.udp))
        self.key = CookieKey(len(self.targets))
        self.tables = {
            Proto.TCP: ProbeTable(len(self.targets)),
            Proto.UDP: ProbeTable(len(self.targets)),
        }
        self.unreachable: dict[int, Reason] = {}
        self.rng = random.Random(secrets.randbits(64))
        self.bucket, self.chunk = for_rate(request.rate_pps, SEND_CHUNK)
        self.progress = progress
        self.stop = stop or threading.Event()
        self.counts = _Counts()
        self._reported_at = 0.0

    @property
    def per_target(self) -> int:
        return len(self.tcp_ports) + len(self.udp_ports)

    def run(self) -> SynOutcome:
        """Scan every target through the interface its route leaves by."""
        started = time.monotonic()
        routes = nexthop.routes(self.targets)
        local = [t for t, r in routes.items() if nexthop.is_loopback(r.interface)]
        if local:
            shown = ", ".join(map(str, sorted(local)[:3]))
            raise ScanError(
                "syn",
                f"{shown}{' and more' if len(local) > 3 else ''}: this host's own "
                "address, which frames from a packet socket never reach; "
                "scan it with the connect engine",
            )
        links: dict[tuple[str, IPv4Address], list[int]] = {}
        for index, target in enumerate(self.targets):
            route = routes.get(target)
            if route is None:
                self.unreachable[index] = Reason.NET_UNREACHABLE
            else:
                links.setdefault((route.interface, route.source), []).append(index)
        with rawsock.reserved_port() as port:
            for (interface, source), members in links.items():
                self._scan_link(interface, source, members, port, routes)
        accounting = self._accounting(time.monotonic() - started, port)
        log.info("syn_scan_finished", **accounting.as_dict())

        return SynOutcome(
            engine=SynEngine.name,
            findings=findings(
                self.targets,
                {Proto.TCP: self.request.tcp, Proto.UDP: self.request.udp},
                self.tables,
                self.unreachable,
            ),
            coverage=accounting.coverage(),
            accounting=accounting,
        )

    def _accounting(self, duration_s: float, port: int) -> Accounting:
        c = self.counts
        local = len(self.unreachable) * self.per_target  # the kernel's own answers
        answered = sum(table.count() for table in self.tables.values())

        return Accounting(
            planned=len(self.targets) * self.per_target,
            sent=c.sent + local,
            answered=answered + local,
            passes=c.passes,
            frames=c.frames,
            duration_s=round(duration_s, 3),
            send_s=round(c.send_s, 3),
            rate_pps=round(c.frames / c.send_s) if c.send_s else 0.0,
            unsent=c.unsent,
            tx_dropped=c.tx_dropped,
            rx_dropped=c.rx_dropped,
            rejected_replies=c.rejected,
            interfaces=tuple(c.interfaces),
            source_port=port,
        )

    # --- one interface ------------------------------------------------------

    def _scan_link(
        self,
        interface: str,
        source: IPv4Address,
        members: list[int],
        port: int,
        routes: dict[IPv4Address, nexthop.Route],
    ) -> None:
        self.counts.interfaces.append(interface)
        udp_ports = bytearray(65536)
        for udp_port in self.udp_ports:
            udp_ports[udp_port] = 1
        receiver_sock = rawsock.open_receiver(interface, reply_filter(source, port))
        receiver = Receiver(
            receiver_sock,
            self.key,
            {self.targets[i].packed: i for i in members},
            port,
            self.tables[Proto.TCP],
            self.tables[Proto.UDP],
            bytes(udp_ports),
        )
        tx_before = rawsock.tx_dropped(interface)
        receiver.start()
        try:
            with contextlib.closing(rawsock.open_sender(interface)) as sock:
                link = self._link(interface, source, members, port, routes, sock)
                self._passes(link)
            self.stop.wait(self.request.timeout_s)  # replies still on their way
        finally:
            receiver.stop()
            receiver_sock.close()
        self.counts.rx_dropped += receiver.drops
        self.counts.rejected += receiver.rejected
        self.counts.tx_dropped += rawsock.tx_dropped(interface) - tx_before

    def _link(
        self,
        interface: str,
        source: IPv4Address,
        members: list[int],
        port: int,
        routes: dict[IPv4Address, nexthop.Route],
        sock: socket.socket,
    ) -> _Link:
        mac = rawsock.interface_mac(interface)
        template = frames.SynTemplate(mac, source, port, secrets.randbits(16))
        hop_of = {i: routes[self.targets[i]].next_hop(self.targets[i]) for i in members}
        behind = {hop: self.targets[i] for i, hop in hop_of.items()}
        hop_macs = nexthop.resolve(
            interface, behind, lambda target: self._prime(template, target)
        )
        macs = {i: hop_macs[hop] for i, hop in hop_of.items() if hop in hop_macs}
        for i in members:
            if i not in macs:
                self.unreachable[i] = Reason.HOST_UNREACHABLE  # no ARP answer
        sender = rawsock.BatchSender(
            sock,
            BATCH_SLOTS,
            frames.SLOT_BYTES,
            frames.FRAME_OFFSET,
            frames.FRAME_BYTES,
        )

        return _Link(
            interface=interface,
            source=source,
            members=[i for i in members if i in macs],
            macs=macs,
            template=template,
            sender=sender,
            udp_sender=rawsock.BatchSender(sock, UDP_SLOTS, UDP_SLOT_BYTES),
            batch=frames.SynBatch(template, sender.buffer),
        )

    def _prime(self, template: frames.SynTemplate, target: IPv4Address) -> None:
        """Send one real probe through the kernel, which resolves its next hop."""
        index = self.targets.index(target)
        no_mac = bytes(6)
        if self.tcp_ports:
            port = self.tcp_ports[0]
            cookie = self.key.cookie(index, port)
            frame = template.probe(no_mac, target, port, cookie)
        else:
            port = self.udp_ports[0]
            cookie = self.key.cookie(index, port) & 0xFFFF
            ends = (template.sport, port)
            frame = udp.udp_probe(
                (no_mac, no_mac), template.source, target, ends, cookie
            )
        kind = (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with socket.socket(*kind) as raw, contextlib.suppress(OSError):
            raw.sendto(frame[14:], (str(target), 0))
            self.counts.frames += 1

    # --- passes -------------------------------------------------------------

    def _passes(self, link: _Link) -> None:
        for number in range(1, self.request.passes + 1):
            if number > 1 and self.stop.wait(min(SETTLE_S, self.request.timeout_s)):
                break
            started = time.monotonic()
            self._tcp_pass(link, first=number == 1)
            self._udp_pass(link, first=number == 1)
            self.counts.send_s += time.monotonic() - started
            self.counts.passes = max(self.counts.passes, number)
            log.debug("syn_pass_done", interface=link.interface, number=number)

    def _tcp_pass(self, link: _Link, first: bool) -> None:
        order = PassOrder(len(link.members), self.tcp_ports, self.rng)
        words = self.key.port_words_be(order.ports)
        numbers = big_endian(array("I", order.ports))
        columns: dict[range, frames.AddressColumns] = {}
        for batch in order.batches(BATCH_SLOTS):
            if self.stop.is_set():
                return
            block = columns.get(batch.columns)
            if block is None:
                block = columns[batch.columns] = self._columns(link, order, batch)
            rows = slice(4 * batch.rows.start, 4 * batch.rows.stop)
            count = link.batch.fill(block, words[rows], numbers[rows])
            if first:
                self.counts.sent += self._send(link.sender, count)
                self._report()
                continue
            active = self._unanswered(link, order, batch)
            if active is None:
                self._send(link.sender, count)
            elif active:
                link.sender.select(active)
                self._send(link.sender, len(active))
                link.sender.reset()

    def _columns(
        self, link: _Link, order: PassOrder, batch: Batch
    ) -> frames.AddressColumns:
        members = [link.members[order.addresses[c]] for c in batch.columns]

        return frames.AddressColumns.build(
            link.template,
            [link.macs[i] for i in members],
            [self.targets[i].packed for i in members],
            self.key.address_words_be(members),
        )

    def _unanswered(
        self, link: _Link, order: PassOrder, batch: Batch
    ) -> list[int] | None:
        """The slots of ``batch`` still unanswered; None when that is all of them."""
        table = self.tables[Proto.TCP]
        width = len(batch.columns)
        skip: set[int] = set()
        for row, position in enumerate(batch.rows):
            port = order.ports[position]
            if not table.ports_answered[port]:
                continue
            for column, address in enumerate(batch.columns):
                if table.answered(link.members[order.addresses[address]], port):
                    skip.add(row * width + column)
        if not skip:
            return None

        return [slot for slot in range(batch.size) if slot not in skip]

    def _udp_pass(self, link: _Link, first: bool) -> None:
        order = PassOrder(len(link.members), self.udp_ports, self.rng)
        table = self.tables[Proto.UDP]
        for batch in order.batches(UDP_SLOTS):
            used = 0
            for slot in range(batch.size):
                address, port = order.probe(batch, slot)
                index = link.members[address]
                if first or not table.answered(index, port):
                    self._udp_frame(link, used, index, port)
                    used += 1
            sent = self._send(link.udp_sender, used)
            if first:
                self.counts.sent += sent

    def _udp_frame(self, link: _Link, slot: int, index: int, port: int) -> None:
        frame = udp.udp_probe(
            (link.template.frame[6:12], link.macs[index]),
            link.source,
            self.targets[index],
            (link.template.sport, port),
            self.key.cookie(index, port) & 0xFFFF,
        )
        start = slot * UDP_SLOT_BYTES
        link.udp_sender.buffer[start : start + len(frame)] = frame
        link.udp_sender.set_length(slot, len(frame))

    def _send(self, sender: rawsock.BatchSender, count: int) -> int:
        """Send messages 0..count-1 at the held rate; return how many went."""
        went = done = 0
        while done < count and not self.stop.is_set():
            size = min(self.chunk, count - done)
            delay = self.bucket.take(size)
            if delay > 0:
                time.sleep(delay)
            went += sender.send(done, size)
            done += size
        self.counts.frames += went
        self.counts.unsent += done - went

        return went

    def _report(self) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self._reported_at >= PROGRESS_EVERY_S:
            self._reported_at = now
            self.progress(self.counts.sent, len(self.targets) * self.per_target)
