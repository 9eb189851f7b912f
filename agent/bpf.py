"""Classic BPF programs for the SYN engine's raw sockets, so that only replies to
this scan (or, for the witness, probes to this address) ever reach Python.

Programs run on cooked (``SOCK_DGRAM``) packet sockets: offset 0 is the IPv4
header, whatever the link layer.  Jumps are written as labels and resolved by
``assemble``; the kernel copies the program when it is attached.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

# Opcodes from linux/filter.h (class | size | mode).
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_H_IND = 0x48
_LD_B_IND = 0x50
_LDX_B_MSH = 0xB1  # X = 4 * (packet[k] & 0xf): the IPv4 header length
_ALU_AND_K = 0x54
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06

_SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # ancillary load: the packet's direction
_PACKET_OUTGOING = 4
_SO_ATTACH_FILTER = 26

# Enough of a reply to read an ICMP error quoting our probe's IP and TCP headers.
SNAP_BYTES = 256

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
ICMP_UNREACHABLE = 3


@dataclass(frozen=True)
class Insn:
    """One instruction; ``jt``/``jf`` name labels for conditional jumps."""

    code: int
    k: int = 0
    jt: str | None = None
    jf: str | None = None
    label: str | None = None


def assemble(program: Sequence[Insn]) -> bytes:
    """The program as the kernel's ``struct sock_filter`` array."""
    where = {insn.label: i for i, insn in enumerate(program) if insn.label}
    out = bytearray()
    for i, insn in enumerate(program):
        jt = where[insn.jt] - i - 1 if insn.jt else 0
        jf = where[insn.jf] - i - 1 if insn.jf else 0
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError(f"jump out of range at instruction {i}")
        out += struct.pack("=HBBI", insn.code, jt, jf, insn.k & 0xFFFFFFFF)

    return bytes(out)


def attach(sock: socket.socket, program: bytes) -> None:
    """Attach a filter to ``sock`` (``SO_ATTACH_FILTER``)."""
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("=HxxxxxxQ", len(program) // 8, ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _inbound_ipv4_to(own: IPv4Address) -> list[Insn]:
    """Drop our own outgoing copies, other destinations and fragments."""
    return [
        Insn(_LD_W_ABS, _SKF_AD_PKTTYPE),
        Insn(_JEQ_K, _PACKET_OUTGOING, jt="drop", jf="dst"),
        Insn(_LD_W_ABS, 16, label="dst"),
        Insn(_JEQ_K, int(own), jt="frag", jf="drop"),
        Insn(_LD_H_ABS, 6, label="frag"),
        Insn(_JSET_K, 0x1FFF, jt="drop", jf="proto"),
        Insn(_LD_B_ABS, 9, label="proto"),
    ]


def reply_filter(own: IPv4Address, port: int) -> bytes:
    """Replies to a scan from ``own``:``port``: TCP or UDP to that port, and
    every ICMP destination-unreachable (checked against the quoted probe later).
    """
    return assemble(
        [
            *_inbound_ipv4_to(own),
            Insn(_JEQ_K, PROTO_TCP, jt="transport", jf="udp?"),
            Insn(_JEQ_K, PROTO_UDP, jt="transport", jf="icmp?", label="udp?"),
            Insn(_JEQ_K, PROTO_ICMP, jt="icmp", jf="drop", label="icmp?"),
            Insn(_LDX_B_MSH, 0, label="transport"),
            Insn(_LD_H_IND, 2),
            Insn(_JEQ_K, port, jt="accept", jf="drop"),
            Insn(_LDX_B_MSH, 0, label="icmp"),
            Insn(_LD_B_IND, 0),
            Insn(_JEQ_K, ICMP_UNREACHABLE, jt="accept", jf="drop"),
            Insn(_RET_K, SNAP_BYTES, label="accept"),
            Insn(_RET_K, 0, label="drop"),
        ]
    )


def probe_filter(own: IPv4Address) -> bytes:
    """Probes arriving at ``own``: TCP segments with SYN and without ACK, and
    every UDP datagram.  Only the headers are kept.
    """
    return assemble(
        [
            *_inbound_ipv4_to(own),
            Insn(_JEQ_K, PROTO_TCP, jt="tcp", jf="udp?"),
            Insn(_JEQ_K, PROTO_UDP, jt="accept", jf="drop", label="udp?"),
            Insn(_LDX_B_MSH, 0, label="tcp"),
            Insn(_LD_B_IND, 13),
            Insn(_ALU_AND_K, 0x12),  # SYN | ACK
            Insn(_JEQ_K, 0x02, jt="accept", jf="drop"),
            Insn(_RET_K, 64, label="accept"),
            Insn(_RET_K, 0, label="drop"),
        ]
    )
