"""The witness: every agent watches its own address for probes from other agents.

It listens on a packet socket, so it sees probes before the destination's own
firewall does, and reports in back-to-back windows (``Sighting`` messages)
that the coordinator joins with what the probing side saw
(protocol/witnessing.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import structlog

from agent import bpf
from agent.errors import CoordinatorError
from agent.rawsock import (
    ETH_P_IP,
    grow_receive_buffer,
    receive_drops,
)
from protocol.messages import Proto, Seen, Sighting
from protocol.ports import PortRanges
from protocol.witnessing import WitnessView

_PROTOS = {bpf.PROTO_TCP: Proto.TCP, bpf.PROTO_UDP: Proto.UDP}

# Short enough that a run's report waits little for the window holding its
# last probes; each window is one small post.
SIGHTING_INTERVAL_S = 5.0
MAX_PENDING = 720  # an hour of windows kept while the coordinator is away
STOP_POST_S = 5.0  # how long a stopping agent tries to post its last window

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WitnessReport:
    """Probes that arrived at ``own_ip`` during one watch, by source address."""

    own_ip: str
    started_at: float
    finished_at: float
    seen: Mapping[tuple[str, Proto], PortRanges]
    dropped: int  # probes the kernel dropped before the witness could read them

    @property
    def complete(self) -> bool:
        """Whether every probe that arrived was seen."""
        return self.dropped == 0

    def view(self, source_ip: str) -> WitnessView:
        """What this witness saw of the probes from ``source_ip``."""
        return WitnessView(
            ip=self.own_ip,
            tcp=self.seen.get((source_ip, Proto.TCP), ()),
            udp=self.seen.get((source_ip, Proto.UDP), ()),
            complete=self.complete,
        )

    def sighting(self, agent: str, subnet: str) -> Sighting:
        """This window as the message the coordinator keeps."""
        return Sighting(
            agent=agent,
            subnet=subnet,
            ip=self.own_ip,
            started_at=self.started_at,
            finished_at=self.finished_at,
            seen=tuple(
                Seen(source, proto, ports)
                for (source, proto), ports in sorted(self.seen.items())
                if ports
            ),
            dropped=self.dropped,
        )


class Witness:
    """Watches ``own_ip`` (on ``interface``, or on every interface) for probes."""

    def __init__(self, own_ip: IPv4Address, interface: str | None = None) -> None:
        self.own_ip = own_ip
        self.interface = interface
        self._seen: dict[tuple[bytes, int], bytearray] = {}
        self._stopping = threading.Event()
        # Unbound, a packet socket created for a protocol hears every interface.
        protocol = 0 if interface else socket.htons(ETH_P_IP)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, protocol)
        self._thread = threading.Thread(target=self._run, name="witness", daemon=True)
        self._lock = threading.Lock()  # between the reading thread and ``take``
        self._started_at = 0.0

    def start(self) -> None:
        """Begin watching; every probe from now on is recorded."""
        bpf.attach(self._sock, bpf.probe_filter(self.own_ip))
        grow_receive_buffer(self._sock)
        if self.interface:
            self._sock.bind((self.interface, ETH_P_IP))
        _drain(self._sock)  # what was queued before the filter was attached
        self._sock.settimeout(0.05)
        receive_drops(self._sock)
        self._started_at = time.time()
        self._thread.start()

    def take(self) -> WitnessReport:
        """What arrived since ``start`` or the last ``take``; a new window begins.

        Windows follow each other without a gap, so a run of them covers every
        moment the witness was watching.
        """
        with self._lock:
            seen, self._seen = self._seen, {}
            dropped = receive_drops(self._sock)
            started_at, self._started_at = self._started_at, time.time()
            finished_at = self._started_at

        return WitnessReport(
            str(self.own_ip),
            started_at,
            finished_at,
            {
                (str(IPv4Address(src)), _PROTOS[proto]): _ports(bitmap)
                for (src, proto), bitmap in seen.items()
            },
            dropped,
        )

    def stop(self) -> WitnessReport:
        """Stop watching and report what arrived in the last window."""
        self._stopping.set()
        self._thread.join()
        report = self.take()
        self._sock.close()

        return report

    def _run(self) -> None:
        buf = bytearray(128)
        while not self._stopping.is_set():
            try:
                size = self._sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                break
            header = (buf[0] & 0x0F) * 4
            if size < header + 4:
                continue
            key = (bytes(buf[12:16]), buf[9])
            port = buf[header + 2] << 8 | buf[header + 3]
            with self._lock:
                ports = self._seen.get(key)
                if ports is None:
                    ports = self._seen[key] = bytearray(65536)
                ports[port] = 1


def _ports(bitmap: bytearray) -> PortRanges:
    """The ranges of ports marked in ``bitmap``, found run by run in C."""
    ranges: list[tuple[int, int]] = []
    first = bitmap.find(1, 1)  # port 0 is no probe of ours
    while first != -1:
        last = bitmap.find(0, first)
        last = len(bitmap) if last == -1 else last
        ranges.append((first, last - 1))
        first = bitmap.find(1, last)

    return tuple(ranges)


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(64)


def own_address(destinations: Iterable[IPv4Network]) -> IPv4Address | None:
    """The address this host sends from towards ``destinations``: where other
    agents' probes to this subnet's agent arrive.  No packet is sent."""
    for network in destinations:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((str(network.network_address + 1), 9))
            except OSError:
                continue
            address = IPv4Address(probe.getsockname()[0])
        if not address.is_loopback:
            return address

    return None


class Sightings:
    """Runs a witness on the agent's own address and posts what it saw, one
    window every ``interval_s``, for as long as the agent runs.

    Windows the coordinator did not take wait and go first next time, up to
    ``MAX_PENDING``: an unreachable coordinator costs no evidence.
    """

    def __init__(
        self,
        witness: Witness,
        post: Callable[[Sighting], Awaitable[None]],
        agent: str,
        subnet: str,
        interval_s: float = SIGHTING_INTERVAL_S,
    ) -> None:
        self.witness = witness
        self.post = post
        self.agent = agent
        self.subnet = subnet
        self.interval_s = interval_s
        self.pending: collections.deque[Sighting] = collections.deque(
            maxlen=MAX_PENDING
        )

    async def run(self) -> None:
        """Watch and post until cancelled; the last window is posted on the way out."""
        self.witness.start()
        log.info("witness_started", ip=str(self.witness.own_ip))
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await self._send(self.witness.take())
        finally:
            report = await asyncio.to_thread(self.witness.stop)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send(report), STOP_POST_S)

    async def _send(self, report: WitnessReport) -> None:
        if report.dropped:
            log.warning("witness_dropped", dropped=report.dropped)
        if len(self.pending) == self.pending.maxlen:
            log.warning("sighting_discarded", started_at=self.pending[0].started_at)
        self.pending.append(report.sighting(self.agent, self.subnet))
        while self.pending:
            try:
                await self.post(self.pending[0])
            except CoordinatorError as exc:
                # Kept for the next window.  Were they lost, the coordinator
                # would see a gap and judge the pairs it covers without witness
                # evidence, never as rejected.
                log.warning(
                    "sighting_failed", error=str(exc), pending=len(self.pending)
                )
                return
            self.pending.popleft()
