"""The scope guard: the agent runs only assignments inside its approved scope.

The scope comes from the agent's image, signed by the segmentation owner's key
(protocol/scope.py), never from the coordinator, so a stolen coordinator key
cannot widen what an agent does (DESIGN.md, "Trust model", point 3).  An
assignment is inside the scope when its rate is at most the scope's maximum
and every port of every target address is allowed by some destination that
holds that address.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network, summarize_address_range
from pathlib import Path

from agent.errors import ConfigError
from protocol.documents import DocumentError
from protocol.messages import Assignment, Proto, Refused
from protocol.ports import PortRanges, format_ports, merge, subtract
from protocol.scope import Destination, Scope, verify_scope
from protocol.signing import SignatureError, load_public_key

SCOPE_PATTERNS = ("*.yaml", "*.yml")


# An address range (first, last) and the destinations that hold all of it.
Segment = tuple[int, int, tuple[Destination, ...]]


@dataclass(frozen=True)
class Violation:
    """Why an assignment falls outside the scope."""

    reason: Refused
    detail: str


def load_approved_scope(path: Path, owner_key: Path, subnet: str) -> Scope:
    """The one verified scope that names ``subnet``, from a file or a directory.

    Every scope file found must verify: one bad signature stops the agent, so
    a tampered image never runs on whatever still checks out.  Raise
    ``ConfigError`` naming the variable and the file at fault.
    """
    try:
        owner = load_public_key(owner_key)
    except SignatureError as exc:
        raise ConfigError("SEGSCAN_SCOPE_KEY", str(exc)) from exc
    files = _scope_files(path)
    try:
        scopes = [verify_scope(file, owner) for file in files]
    except (SignatureError, DocumentError) as exc:
        raise ConfigError("SEGSCAN_SCOPE", str(exc)) from exc
    mine = [scope for scope in scopes if subnet in scope.subnets]
    if len(mine) != 1:
        found = ", ".join(scope.source for scope in mine) or "none"
        raise ConfigError(
            "SEGSCAN_SCOPE",
            f"exactly one approved scope in {path} must name subnet {subnet!r} "
            f"(found: {found})",
        )

    return mine[0]


def _scope_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted({f for pattern in SCOPE_PATTERNS for f in path.glob(pattern)})
    if not files:
        raise ConfigError("SEGSCAN_SCOPE", f"no scope files (*.yaml) in {path}")

    return files


def check(scope: Scope, assignment: Assignment) -> Violation | None:
    """Why ``assignment`` is outside ``scope``, or None when it is inside."""
    if assignment.rate_pps > scope.max_rate_pps:
        return Violation(
            Refused.RATE,
            f"rate {assignment.rate_pps} pps above the approved "
            f"{scope.max_rate_pps} pps",
        )
    segments: list[Segment] = []
    for target in assignment.targets:
        try:
            network = ip_network(target, strict=False)
        except ValueError:
            network = None
        if not isinstance(network, IPv4Network):
            return Violation(Refused.DESTINATION, f"target {target!r} is not IPv4")
        segments += _segments(network, scope.destinations)
    outside = [(first, last) for first, last, holders in segments if not holders]
    if outside:
        return Violation(
            Refused.DESTINATION,
            f"destination {_ranges(outside)} outside approved scope",
        )

    return _port_violation(segments, assignment)


def _port_violation(
    segments: Sequence[Segment], assignment: Assignment
) -> Violation | None:
    for first, last, holders in segments:
        for proto, wanted in ((Proto.TCP, assignment.tcp), (Proto.UDP, assignment.udp)):
            allowed = merge(r for d in holders for r in _ports(d, proto))
            extra = subtract(wanted, allowed)
            if extra:
                return Violation(
                    Refused.PORT,
                    f"{proto}/{format_ports(extra)} to {_ranges([(first, last)])} "
                    "outside approved scope",
                )

    return None


def _segments(
    network: IPv4Network, destinations: Sequence[Destination]
) -> list[Segment]:
    """``network`` cut into address ranges held by the same destinations."""
    first, last = int(network.network_address), int(network.broadcast_address)
    cuts = {first, last + 1}
    for d in destinations:
        for edge in (
            int(d.network.network_address),
            int(d.network.broadcast_address) + 1,
        ):
            if first < edge <= last:
                cuts.add(edge)
    edges = sorted(cuts)
    segments = []
    for start, end in itertools.pairwise(edges):
        holders = tuple(d for d in destinations if _holds(d.network, start, end - 1))
        segments.append((start, end - 1, holders))

    return segments


def _holds(network: IPv4Network, first: int, last: int) -> bool:
    return int(network.network_address) <= first and last <= int(
        network.broadcast_address
    )


def _ports(destination: Destination, proto: Proto) -> PortRanges:
    return destination.tcp if proto is Proto.TCP else destination.udp


def _ranges(ranges: Sequence[tuple[int, int]]) -> str:
    """Address ranges as people read them: a CIDR where one fits, else first-last."""
    joined: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if joined and first <= joined[-1][1] + 1:
            joined[-1] = (joined[-1][0], max(joined[-1][1], last))
        else:
            joined.append((first, last))
    shown = [_range(first, last) for first, last in joined[:3]]
    more = f" and {len(joined) - 3} more" if len(joined) > 3 else ""

    return ", ".join(shown) + more


def _range(first: int, last: int) -> str:
    networks = list(summarize_address_range(IPv4Address(first), IPv4Address(last)))
    if len(networks) == 1:
        return str(networks[0])

    return f"{IPv4Address(first)}-{IPv4Address(last)}"


def verify_file(path: Path, owner_key: Path) -> Scope:
    """The scope file ``path`` once verified with ``owner_key``, for
    ``agent scope verify``; raise ``ConfigError`` naming what is wrong."""
    try:
        return verify_scope(path, load_public_key(owner_key))
    except (SignatureError, DocumentError) as exc:
        raise ConfigError(str(path), str(exc).removeprefix(f"{path}: ")) from exc
