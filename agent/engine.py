"""The interface every scan engine (connect, SYN) offers the agent.

An engine takes a ``ScanRequest`` and returns findings in the report's shape
plus coverage; it never raises for one silent or unreachable target, since a
failure on a target is data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from protocol.messages import Coverage, Finding, PortState, Proto, Reason
from protocol.ports import PortRanges, compress

ProgressCallback = Callable[[int, int], None]
"""Called now and then with (probes sent so far, probes planned)."""


@dataclass(frozen=True)
class ScanRequest:
    """What to scan and how hard."""

    targets: tuple[IPv4Address, ...]
    tcp: PortRanges
    udp: PortRanges = ()
    rate_pps: int = 1000
    passes: int = 2
    timeout_s: float = 1.0  # how long a probe may wait for its answer


@dataclass(frozen=True)
class ScanOutcome:
    """Everything one scan saw."""

    engine: str
    findings: tuple[Finding, ...]
    coverage: Coverage


class Engine(Protocol):
    """A way of sending probes and classifying what comes back."""

    name: str

    async def scan(
        self, request: ScanRequest, progress: ProgressCallback | None = None
    ) -> ScanOutcome:
        """Probe every (target, port) of ``request``; report what answered."""
        ...


class FindingsBuilder:
    """Collects per-port observations and folds them into port ranges."""

    def __init__(self) -> None:
        self._ports: defaultdict[
            tuple[str, Proto, PortState, Reason, int | None], list[int]
        ] = defaultdict(list)

    def add(
        self,
        ip: str,
        proto: Proto,
        port: int,
        state: PortState,
        reason: Reason,
        ttl: int | None = None,
    ) -> None:
        """Record what one probe found."""
        self._ports[(ip, proto, state, reason, ttl)].append(port)

    def build(self) -> tuple[Finding, ...]:
        """The findings, one per (address, protocol, state, reason, TTL)."""
        findings = [
            Finding(ip, proto, compress(ports), state, reason, ttl)
            for (ip, proto, state, reason, ttl), ports in self._ports.items()
        ]
        findings.sort(key=lambda f: (IPv4Address(f.ip), f.proto, f.ports[0]))

        return tuple(findings)
