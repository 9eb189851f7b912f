"""The messages of the protocol (assignments, results, heartbeats, refusals,
sightings), as versioned msgpack structs.

Every message is a closed struct: decoding rejects unknown fields, wrong types
and protocol versions this build does not speak.  Assignments are data, never
commands (DESIGN.md, "Trust model").
"""

from __future__ import annotations

import enum
import functools
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
        _ipv4(self.ip)  # a ValueError here fails decoding, naming the field
        for first, last in self.ports:  # a loop: results carry 100s of findings
            if first > last:
                raise ValueError(f"port range runs backwards in {self.ports}")


# A result repeats the few addresses of its chunk across many findings, and
# parsing an address costs more than the rest of decoding a finding: remember.
@functools.lru_cache(maxsize=4096)
def _ipv4(text: str) -> IPv4Address:
    return IPv4Address(text)


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


class Seen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ports probed from ``source`` that the witness saw arrive."""

    source: str
    proto: Proto
    ports: Annotated[WirePorts, msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        _ipv4(self.source)


class Sighting(_Message, frozen=True, tag="sighting"):
    """What an agent's witness saw arrive at its own address ``ip`` during one
    window.  Windows follow each other without gaps while the witness runs, so
    the coordinator can tell a probe that never arrived from one nobody watched.
    """

    agent: str
    subnet: str
    ip: str
    started_at: float
    finished_at: float
    seen: tuple[Seen, ...]
    dropped: Count = 0  # probes the kernel dropped before the witness read them
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        super().__post_init__()
        _ipv4(self.ip)
        if self.finished_at < self.started_at:
            raise ValueError("a sighting's window ends before it starts")


class Refused(enum.StrEnum):
    """Why an agent refused a queue message without scanning anything."""

    OVERSIZED = "oversized"
    UNDECODABLE = "undecodable"
    UNKNOWN_KEY = "unknown-key"  # signed, but not by the coordinator's key
    BAD_SIGNATURE = "bad-signature"
    WRONG_SUBNET = "wrong-subnet"
    NOT_YET_VALID = "not-yet-valid"  # issued in the future, beyond clock skew
    EXPIRED = "expired"
    LIFETIME = "lifetime"  # valid for longer than agents accept
    REPLAYED = "replayed"  # an assignment id seen before in another message
    DESTINATION = "out-of-scope-destination"
    PORT = "out-of-scope-port"
    RATE = "out-of-scope-rate"


class Refusal(_Message, frozen=True, tag="refusal"):
    """An agent saying it refused a queue message, and why.

    ``assignment_id`` and ``run_id`` are set only when the coordinator's
    signature on the message verified: otherwise nothing in it is trusted.
    """

    agent: str
    subnet: str
    message_id: str  # SQS's id of the message refused
    body_sha256: str  # of the queue body exactly as received
    reason: Refused
    detail: str
    received_at: float
    assignment_id: str | None = None
    run_id: str | None = None
    version: int = PROTOCOL_VERSION


Message = Assignment | Result | Heartbeat | Refusal | Sighting
