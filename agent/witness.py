"""The witness: every agent watches its own address for probes from other agents,
and the pure rules that join what it saw with what the probing side saw.

A probe that reached the destination proves the path even when no service
answers (``arrived``).  A RST or port-unreachable that came back while the
destination's witness saw no probe was forged on the way, by a firewall that
rejects: ``rejected``, which is not reachable.  The witness listens on a packet
socket, so it sees probes before the destination's own firewall does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from agent import bpf
from agent.rawsock import (
    ETH_P_IP,
    grow_receive_buffer,
    receive_drops,
)
from protocol.messages import Finding, PortState, Proto, Reason
from protocol.ports import PortRanges, compress, merge, subtract

_PROTOS = {bpf.PROTO_TCP: Proto.TCP, bpf.PROTO_UDP: Proto.UDP}


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


@dataclass(frozen=True)
class WitnessView:
    """What the witness at ``ip`` saw of one source's probes."""

    ip: str
    tcp: PortRanges = ()
    udp: PortRanges = ()
    complete: bool = True

    def ports(self, proto: Proto) -> PortRanges:
        return self.tcp if proto is Proto.TCP else self.udp

    def findings(self) -> tuple[Finding, ...]:
        """The probes seen, as ``arrived`` findings on ``ip``."""
        return tuple(
            Finding(self.ip, proto, ports, PortState.ARRIVED, Reason.WITNESS)
            for proto, ports in ((Proto.TCP, self.tcp), (Proto.UDP, self.udp))
            if ports
        )


def combine(
    findings: Iterable[Finding], views: Iterable[WitnessView]
) -> tuple[Finding, ...]:
    """A source's findings joined with the destinations' witnesses' views.

    On every address with a witness: ``closed`` ports the witness did not see
    become ``rejected`` (only when the witness missed nothing: otherwise they
    stay closed, the reachable and therefore safe reading); ports the witness
    saw that did not answer open or closed become ``arrived``.  Findings on
    addresses without a witness pass through unchanged.
    """
    by_ip = {view.ip: view for view in views}
    out: list[Finding] = []
    answered: dict[tuple[str, Proto], PortRanges] = {}
    for finding in findings:
        view = by_ip.get(finding.ip)
        if view is None:
            out.append(finding)
            continue
        seen = view.ports(finding.proto)
        if finding.state in (PortState.OPEN, PortState.CLOSED):
            key = (finding.ip, finding.proto)
            answered[key] = merge([*answered.get(key, ()), *finding.ports])
        out += _relabel(finding, seen, view.complete)
    for view in by_ip.values():
        for proto in Proto:
            arrived = subtract(view.ports(proto), answered.get((view.ip, proto), ()))
            if arrived:
                out.append(
                    Finding(view.ip, proto, arrived, PortState.ARRIVED, Reason.WITNESS)
                )

    return _tidy(out)


def _relabel(finding: Finding, seen: PortRanges, complete: bool) -> list[Finding]:
    if finding.state is PortState.OPEN:
        return [finding]
    if finding.state is PortState.CLOSED:
        unseen = subtract(finding.ports, seen) if complete else ()
        kept = subtract(finding.ports, unseen)
        parts = [(kept, finding.state), (unseen, PortState.REJECTED)]
    else:  # silent or refused on the way: the arrivals are added by the caller
        parts = [(subtract(finding.ports, seen), finding.state)]

    return [
        Finding(finding.ip, finding.proto, ports, state, finding.reason, finding.ttl)
        for ports, state in parts
        if ports
    ]


def _tidy(findings: list[Finding]) -> tuple[Finding, ...]:
    findings.sort(key=lambda f: (IPv4Address(f.ip), f.proto, f.ports[0]))

    return tuple(findings)


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

    def stop(self) -> WitnessReport:
        """Stop watching and report what arrived."""
        self._stopping.set()
        self._thread.join()
        dropped = receive_drops(self._sock)
        self._sock.close()
        seen = {
            (str(IPv4Address(src)), _PROTOS[proto]): compress(
                port for port, hit in enumerate(ports) if hit
            )
            for (src, proto), ports in self._seen.items()
        }

        return WitnessReport(
            str(self.own_ip), self._started_at, time.time(), seen, dropped
        )

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
            ports = self._seen.get(key)
            if ports is None:
                ports = self._seen[key] = bytearray(65536)
            ports[buf[header + 2] << 8 | buf[header + 3]] = 1


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(64)
