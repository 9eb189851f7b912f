"""The SYN engine's receiver: reads replies off a filtered packet socket, checks
each against the probe it claims to answer, and records what it says.

What a reply means (DESIGN.md, "Port states and verdicts"): SYN-ACK is open,
RST is closed, a UDP datagram is open.  An ICMP destination-unreachable quotes
the probe (RFC 792): port-unreachable sent by the target itself means the probe
got there (closed); any unreachable sent by something else on the way means a
device refused to forward it (prohibited).  TCP replies must acknowledge the
probe's cookie, and ICMP errors must quote it (TCP sequence number, or IP ID
for UDP): a forged ICMP could hide reachability.  UDP replies cannot carry it
and are matched by address and port only; a forged one can only make a pair
look more reachable, the safe mistake for a segmentation test.
"""

from __future__ import annotations

import enum
import re
import socket
import struct
import threading
from collections.abc import Iterator

from agent.bpf import ICMP_UNREACHABLE, PROTO_ICMP, PROTO_TCP, PROTO_UDP
from agent.cookie import CookieKey
from agent.rawsock import receive_drops
from protocol.messages import PortState, Reason

_SYN_ACK = 0x12
_RST = 0x04
_TCP_HEADER = struct.Struct("!HHIIxB")  # sport, dport, seq, ack, flags
_PORTS = struct.Struct("!HH")
_NOTHING = re.compile(rb"[^\x00]")


class Answer(enum.IntEnum):
    """What one probe got back, as stored per probe (0: nothing yet)."""

    SYN_ACK = 1
    RST = 2
    UDP_REPLY = 3
    CLOSED_UNREACHABLE = 4  # port unreachable from the target itself
    PORT_UNREACHABLE = 5  # port unreachable from a device on the way
    HOST_UNREACHABLE = 6
    NET_UNREACHABLE = 7
    ADMIN_PROHIBITED = 8

    @property
    def meaning(self) -> tuple[PortState, Reason]:
        return _MEANING[self]

    @property
    def reachable(self) -> bool:
        return self <= Answer.CLOSED_UNREACHABLE


_MEANING = {
    Answer.SYN_ACK: (PortState.OPEN, Reason.SYN_ACK),
    Answer.RST: (PortState.CLOSED, Reason.RST),
    Answer.UDP_REPLY: (PortState.OPEN, Reason.UDP_REPLY),
    Answer.CLOSED_UNREACHABLE: (PortState.CLOSED, Reason.PORT_UNREACHABLE),
    Answer.PORT_UNREACHABLE: (PortState.PROHIBITED, Reason.PORT_UNREACHABLE),
    Answer.HOST_UNREACHABLE: (PortState.PROHIBITED, Reason.HOST_UNREACHABLE),
    Answer.NET_UNREACHABLE: (PortState.PROHIBITED, Reason.NET_UNREACHABLE),
    Answer.ADMIN_PROHIBITED: (PortState.PROHIBITED, Reason.ADMIN_PROHIBITED),
}

# ICMP destination-unreachable codes (RFC 792, RFC 1122, RFC 1812).  Codes that
# say nothing about reachability (fragmentation needed, source route failed)
# are left out: such a probe stays unanswered and is sent again.
_ICMP_ANSWERS = {
    0: Answer.NET_UNREACHABLE,
    6: Answer.NET_UNREACHABLE,
    11: Answer.NET_UNREACHABLE,
    1: Answer.HOST_UNREACHABLE,
    7: Answer.HOST_UNREACHABLE,
    12: Answer.HOST_UNREACHABLE,
    3: Answer.PORT_UNREACHABLE,
    9: Answer.ADMIN_PROHIBITED,
    10: Answer.ADMIN_PROHIBITED,
    13: Answer.ADMIN_PROHIBITED,
    14: Answer.ADMIN_PROHIBITED,
    15: Answer.ADMIN_PROHIBITED,
}


class ProbeTable:
    """The answer and reply TTL of every (address, port) of one protocol.

    One byte each per port, allocated for an address on its first answer, so a
    silent chunk costs nothing and a 256-address chunk at most 32 MiB.
    """

    def __init__(self, address_count: int) -> None:
        self.answers: list[bytearray | None] = [None] * address_count
        self.ttls: list[bytearray | None] = [None] * address_count
        self.ports_answered = bytearray(65536)  # lets a pass skip whole rows

    def record(self, address: int, port: int, answer: Answer, ttl: int) -> None:
        """Keep the first answer, unless a later one proves reachability."""
        answers = self.answers[address]
        if answers is None:
            answers = self.answers[address] = bytearray(65536)
            self.ttls[address] = bytearray(65536)
        held = answers[port]
        if held and (Answer(held).reachable or not answer.reachable):
            return
        answers[port] = answer
        self.ttls[address][port] = ttl  # type: ignore[index]
        self.ports_answered[port] = 1

    def answered(self, address: int, port: int) -> bool:
        answers = self.answers[address]

        return answers is not None and answers[port] != 0

    def count(self) -> int:
        """How many probes have an answer."""
        return sum(65536 - a.count(0) for a in self.answers if a is not None)

    def entries(self, address: int) -> Iterator[tuple[int, Answer, int]]:
        """(port, answer, ttl) of every answered port of ``address``."""
        answers, ttls = self.answers[address], self.ttls[address]
        if answers is None or ttls is None:
            return
        for match in _NOTHING.finditer(answers):
            port = match.start()
            yield port, Answer(answers[port]), ttls[port]


class Receiver(threading.Thread):
    """Reads ``sock`` until stopped, recording proven answers in the tables."""

    def __init__(
        self,
        sock: socket.socket,
        key: CookieKey,
        index: dict[bytes, int],
        port: int,
        tcp: ProbeTable,
        udp: ProbeTable,
        udp_ports: bytes,
    ) -> None:
        super().__init__(name="syn-receiver", daemon=True)
        self.sock, self.key, self.index, self.port = sock, key, index, port
        self.tcp, self.udp = tcp, udp
        self.udp_ports = udp_ports  # one byte per port, set for the ports probed
        self.drops = 0
        self.rejected = 0  # replies that named a probe we never sent
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Finish reading, then count the kernel's drops."""
        self._stop_event.set()
        self.join()
        self.drops += receive_drops(self.sock)

    def run(self) -> None:
        buf = bytearray(2048)
        while not self._stop_event.is_set():
            try:
                size = self.sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                self.handle(buf, size)
            except (struct.error, IndexError, ValueError):
                self.rejected += 1  # malformed: never let one packet end the scan

    def handle(self, packet: bytearray, size: int) -> None:
        """Classify one IPv4 packet (cooked: no link-layer header)."""
        if size < 28:
            return
        header = (packet[0] & 0x0F) * 4
        proto, ttl, src = packet[9], packet[8], bytes(packet[12:16])
        if proto == PROTO_TCP and size >= header + 14:
            self._tcp(packet, header, src, ttl)
        elif proto == PROTO_UDP and size >= header + 8:
            self._udp(packet, header, src, ttl)
        elif proto == PROTO_ICMP and packet[header] == ICMP_UNREACHABLE:
            self._icmp(packet, size, header, src, ttl)

    def _tcp(self, packet: bytearray, at: int, src: bytes, ttl: int) -> None:
        sport, _dport, _seq, ack, flags = _TCP_HEADER.unpack_from(packet, at)
        address = self.index.get(src)
        if address is None or not self.key.acknowledges(address, sport, ack):
            self.rejected += 1
            return
        if flags & _SYN_ACK == _SYN_ACK:
            self.tcp.record(address, sport, Answer.SYN_ACK, ttl)
        elif flags & _RST:
            self.tcp.record(address, sport, Answer.RST, ttl)

    def _udp(self, packet: bytearray, at: int, src: bytes, ttl: int) -> None:
        sport, _dport = _PORTS.unpack_from(packet, at)
        address = self.index.get(src)
        if address is None or not self.udp_ports[sport]:
            self.rejected += 1
            return
        self.udp.record(address, sport, Answer.UDP_REPLY, ttl)

    def _icmp(
        self, packet: bytearray, size: int, at: int, src: bytes, ttl: int
    ) -> None:
        answer = _ICMP_ANSWERS.get(packet[at + 1])
        inner = at + 8
        if answer is None or size < inner + 28:
            return
        inner_header = (packet[inner] & 0x0F) * 4
        proto, ip_id = packet[inner + 9], packet[inner + 4] << 8 | packet[inner + 5]
        dst = bytes(packet[inner + 16 : inner + 20])
        address = self.index.get(dst)
        transport = inner + inner_header
        if address is None or size < transport + 8:
            self.rejected += 1
            return
        sport, dport = _PORTS.unpack_from(packet, transport)
        if sport != self.port:
            self.rejected += 1
            return
        if answer is Answer.PORT_UNREACHABLE and src == dst:
            answer = Answer.CLOSED_UNREACHABLE
        cookie = self.key.cookie(address, dport)
        if proto == PROTO_TCP:
            (seq,) = struct.unpack_from("!I", packet, transport + 4)
            if seq == cookie:
                self.tcp.record(address, dport, answer, ttl)
                return
        elif proto == PROTO_UDP and ip_id == cookie & 0xFFFF:
            self.udp.record(address, dport, answer, ttl)
            return
        self.rejected += 1
