"""The policy file: which subnets exist and what reachability is intended.

A rule names a source and a destination (a segment or a subnet) and expects
``closed`` (nothing may be reachable) or ``open`` (reachable, optionally only
on the listed ports).  Rules expand into directed subnet pairs; the first rule
that names a pair governs it, so a narrow rule placed first overrides a broad
one, as in a firewall.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import msgspec

from coordinator.errors import PolicyError
from protocol.documents import Document, DocumentError, parse_document, read_text
from protocol.messages import ScanKind
from protocol.ports import PortRanges, count, parse_ports


class Expect(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class _SegmentDoc(msgspec.Struct, forbid_unknown_fields=True):
    subnets: dict[str, str]


class _RuleDoc(msgspec.Struct, forbid_unknown_fields=True, rename={"src": "from"}):
    src: str
    to: str
    expect: Expect
    tcp: Any = None
    udp: Any = None


class _ScanDoc(msgspec.Struct, forbid_unknown_fields=True):
    tcp: Any = "1-65535"
    udp: Any = None
    rate: int = 20_000
    passes: int = 2
    engine: ScanKind = ScanKind.AUTO
    chunk_probes: int = 2_000_000


class _AssessmentDoc(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    tester: str | None = None
    organisation: str | None = None


class _PolicyDoc(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    segments: dict[str, _SegmentDoc]
    rules: list[_RuleDoc]
    scan: _ScanDoc = msgspec.field(default_factory=_ScanDoc)
    assessment: _AssessmentDoc = msgspec.field(default_factory=_AssessmentDoc)


@dataclass(frozen=True)
class Subnet:
    name: str
    segment: str
    cidr: IPv4Network


@dataclass(frozen=True)
class ScanSettings:
    tcp: PortRanges
    udp: PortRanges
    rate_pps: int
    passes: int
    engine: ScanKind
    chunk_probes: int


@dataclass(frozen=True)
class Pair:
    """A directed subnet pair and what the policy expects of it."""

    src: str
    dst: str
    expect: Expect
    allowed_tcp: PortRanges | None = None  # None: any port may be open
    allowed_udp: PortRanges | None = None

    @property
    def name(self) -> str:
        return f"{self.src} -> {self.dst}"


@dataclass(frozen=True)
class Policy:
    """A validated policy: subnets, the directed pairs to test, scan settings."""

    source: str
    text: str
    subnets: dict[str, Subnet]
    segments: dict[str, tuple[str, ...]]
    pairs: tuple[Pair, ...]
    scan: ScanSettings
    # Who tests, for whom: the report names them (PCI DSS 11.4.5 evidence).
    tester: str | None = None
    organisation: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def pair(self, src: str, dst: str) -> Pair | None:
        """The pair ``src -> dst`` if a rule covers it."""
        return next((p for p in self.pairs if (p.src, p.dst) == (src, dst)), None)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise ``PolicyError`` naming file and line."""
    try:
        text = read_text(path)
    except DocumentError as exc:
        raise PolicyError(str(path), exc.message) from exc

    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy text; raise ``PolicyError`` naming file and line."""
    try:
        doc = parse_document(text, source)
        raw = doc.convert(_PolicyDoc)
        if raw.version != 1:
            raise doc.error(
                f"unsupported policy version {raw.version} (expected 1)", "version"
            )
        subnets = _subnets(doc, raw)
        segments = {name: tuple(seg.subnets) for name, seg in raw.segments.items()}
        pairs = _pairs(doc, raw, subnets, segments)
        scan = _scan(doc, raw.scan)
    except DocumentError as exc:
        where = f"{exc.path}:{exc.line}" if exc.line else exc.path
        raise PolicyError(where, exc.message) from exc

    return Policy(
        source,
        text,
        subnets,
        segments,
        pairs,
        scan,
        raw.assessment.tester,
        raw.assessment.organisation,
    )


def _subnets(doc: Document, raw: _PolicyDoc) -> dict[str, Subnet]:
    subnets: dict[str, Subnet] = {}
    spans: list[tuple[int, int]] = []
    if not raw.segments:
        raise doc.error("no segments defined", "segments")
    for seg_name, seg in raw.segments.items():
        for name, cidr_text in seg.subnets.items():
            where = ("segments", seg_name, "subnets", name)
            if name in subnets or name in raw.segments:
                raise doc.error(f"subnet name {name!r} is used twice", *where)
            try:
                cidr = IPv4Network(cidr_text)
            except ValueError as exc:
                raise doc.error(
                    f"bad CIDR for subnet {name!r}: {exc}", *where
                ) from None
            if _overlaps(spans, cidr):
                clash = next(s for s in subnets.values() if s.cidr.overlaps(cidr))
                raise doc.error(f"{name} ({cidr}) overlaps {clash.name}", *where)
            subnets[name] = Subnet(name, seg_name, cidr)

    return subnets


_NO_ADDRESS = 1 << 32  # past every IPv4 address: sorts after any span


def _overlaps(spans: list[tuple[int, int]], cidr: IPv4Network) -> bool:
    """Whether ``cidr`` overlaps one of ``spans``; if not, add it to them.

    ``spans`` are disjoint (first, last) address ranges kept sorted, so their
    ends are sorted too and only the last span starting at or before ``cidr``
    ends can reach it: a bisection, where comparing every pair of a
    thousand-subnet estate took seconds.
    """
    first, last = int(cidr.network_address), int(cidr.broadcast_address)
    before = bisect.bisect_right(spans, (last, _NO_ADDRESS)) - 1
    if before >= 0 and spans[before][1] >= first:
        return True
    bisect.insort(spans, (first, last))

    return False


def _pairs(
    doc: Document,
    raw: _PolicyDoc,
    subnets: dict[str, Subnet],
    segments: dict[str, tuple[str, ...]],
) -> tuple[Pair, ...]:
    pairs: dict[tuple[str, str], Pair] = {}
    for index, rule in enumerate(raw.rules):
        sources = _members(doc, rule.src, subnets, segments, ("rules", index, "from"))
        targets = _members(doc, rule.to, subnets, segments, ("rules", index, "to"))
        tcp = _ports(doc, rule.tcp, ("rules", index, "tcp"))
        udp = _ports(doc, rule.udp, ("rules", index, "udp"))
        if rule.expect is Expect.CLOSED and (tcp or udp):
            raise doc.error("ports only narrow an `expect: open` rule", "rules", index)
        restricted = tcp is not None or udp is not None
        for src in sources:
            for dst in targets:
                if src != dst and (src, dst) not in pairs:
                    pairs[(src, dst)] = Pair(
                        src,
                        dst,
                        rule.expect,
                        (tcp or ()) if restricted else None,
                        (udp or ()) if restricted else None,
                    )
    if not pairs:
        raise doc.error("the rules name no subnet pair to test", "rules")

    return tuple(pairs.values())


def _members(
    doc: Document,
    name: str,
    subnets: dict[str, Subnet],
    segments: dict[str, tuple[str, ...]],
    where: tuple[str | int, ...],
) -> tuple[str, ...]:
    if name in segments:
        return segments[name]
    if name in subnets:
        return (name,)
    known = ", ".join(sorted([*segments, *subnets]))
    raise doc.error(f"unknown segment or subnet {name!r} (known: {known})", *where)


def _ports(
    doc: Document, value: object, where: tuple[str | int, ...]
) -> PortRanges | None:
    if value is None:
        return None
    try:
        return parse_ports(value)
    except ValueError as exc:
        raise doc.error(str(exc), *where) from None


def _scan(doc: Document, raw: _ScanDoc) -> ScanSettings:
    tcp = _ports(doc, raw.tcp, ("scan", "tcp")) or ()
    udp = _ports(doc, raw.udp, ("scan", "udp")) or ()
    if not tcp and not udp:
        raise doc.error("scan names no ports", "scan")
    if raw.rate < 1:
        raise doc.error("rate must be at least 1 probe per second", "scan", "rate")
    if not 1 <= raw.passes <= 10:
        raise doc.error("passes must be between 1 and 10", "scan", "passes")
    per_address = count(tcp) + count(udp)
    if raw.chunk_probes < max(1000, per_address):
        raise doc.error(
            f"chunk_probes must be at least 1000 and cover one address's "
            f"{per_address} ports",
            "scan",
            "chunk_probes",
        )

    return ScanSettings(tcp, udp, raw.rate, raw.passes, raw.engine, raw.chunk_probes)
