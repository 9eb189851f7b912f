"""The assignment, result and heartbeat messages, as versioned msgpack structs.

Every message is a closed struct: decoding rejects unknown fields, wrong types
and protocol versions this build does not speak.  Assignments are data, never
commands (DESIGN.md, "Trust model").
"""

from __future__ import annotations

import enum
from ipaddress import IPv4Address
from typing import Annotated

import msgspec

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Count = Annotated[int, msgspec.Meta(ge=0)]
WirePorts = tuple[tuple[Port, Port], ...]

PROTOCOL_VERSION = 1


class Proto(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"


class PortState(enum.StrEnum):
    """What one probe found, from the source's point of view."""

    OPEN = "open"  # SYN-ACK or a UDP reply
    CLOSED = "closed"  # RST: the packet crossed the boundary
    FILTERED = "filtered"  # no answer after every pass
    OPEN_FILTERED = "open|filtered"  # UDP: silence cannot tell these apart
    PROHIBITED = "prohibited"  # ICMP unreachable or administratively prohibited
    ARRIVED = "arrived"  # the destination's witness saw the probe
    REJECTED = "rejected"  # a RST the destination never sent: forged on the way

    @property
    def reachable(self) -> bool:
        """Whether this state proves a packet crossed the boundary."""
        return self in _REACHABLE


_REACHABLE = frozenset({PortState.OPEN, PortState.CLOSED, PortState.ARRIVED})


class Reason(enum.StrEnum):
    """Why a probe got its state; kept as evidence."""

    SYN_ACK = "syn-ack"
    RST = "rst"
    CONNECTED = "connected"  # connect() completed the handshake
    REFUSED = "refused"  # connect() was refused: a RST came back
    NO_RESPONSE = "no-response"
    UDP_REPLY = "udp-reply"
    PORT_UNREACHABLE = "port-unreachable"
    HOST_UNREACHABLE = "host-unreachable"
    NET_UNREACHABLE = "net-unreachable"
    ADMIN_PROHIBITED = "admin-prohibited"
    WITNESS = "witness"


class ScanKind(enum.StrEnum):
    """Which engine an assignment asks for; ``auto`` lets the agent choose."""

    AUTO = "auto"
    SYN = "syn"
    CONNECT = "connect"


class _Message(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"
):
    def __post_init__(self) -> None:
        version = getattr(self, "version", PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            raise ValueError(
                f"unsupported protocol version {version} "
                f"(this build speaks {PROTOCOL_VERSION})"
            )


class Assignment(_Message, frozen=True, tag="assignment"):
    """One chunk of work for the agent of subnet ``src``: scan these targets."""

    id: str
    run_id: str
    src: str
    dst: str
    targets: tuple[str, ...]  # IPv4 networks in CIDR form
    tcp: WirePorts
    udp: WirePorts
    rate_pps: Annotated[int, msgspec.Meta(ge=1)]
    passes: Annotated[int, msgspec.Meta(ge=1, le=10)]
    issued_at: float  # seconds since the epoch
    expires_at: float
    kind: ScanKind = ScanKind.AUTO
    version: int = PROTOCOL_VERSION


class Finding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ports of one address that share a state and a reason."""

    ip: str
    proto: Proto
    ports: Annotated[WirePorts, msgspec.Meta(min_length=1)]
    state: PortState
    reason: Reason
    ttl: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None

    def __post_init__(self) -> None:
        IPv4Address(self.ip)  # a ValueError here fails decoding, naming the field
        if any(first > last for first, last in self.ports):
            raise ValueError(f"port range runs backwards in {self.ports}")


class Coverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How much of a chunk was probed: silence only counts when this is full."""

    planned: Count
    sent: Count
    answered: Count
    passes: Count
    dropped: Count = 0  # probes or replies the kernel dropped


class Result(_Message, frozen=True, tag="result"):
    """What the agent of ``src`` saw while running one assignment."""

    assignment_id: str
    run_id: str
    src: str
    dst: str
    agent: str
    engine: str
    started_at: float
    finished_at: float
    coverage: Coverage
    findings: tuple[Finding, ...]
    error: str | None = None  # set when the chunk could not be completed
    version: int = PROTOCOL_VERSION


class Heartbeat(_Message, frozen=True, tag="heartbeat"):
    """An agent saying it is alive, and what it is doing."""

    agent: str
    subnet: str
    sent_at: float
    assignment_id: str | None = None
    version: int = PROTOCOL_VERSION


Message = Assignment | Result | Heartbeat
