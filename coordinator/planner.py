"""Turns a policy's directed pairs into assignment chunks.

A chunk is one source agent's work on a block of destination addresses and
ports, bounded by ``chunk_probes`` so that it finishes in minutes and a lost
chunk costs little to redo.  Network and broadcast addresses are left out;
every other address of the destination subnet is probed.
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, summarize_address_range

from coordinator.policy import Pair, Policy
from protocol.messages import Assignment
from protocol.ports import PortRanges, count

# How long an assignment may wait in a queue before agents must refuse it.
ASSIGNMENT_TTL_S = 3600.0


@dataclass(frozen=True)
class Chunk:
    pair: Pair
    first: IPv4Address
    last: IPv4Address
    tcp: PortRanges
    udp: PortRanges

    @property
    def addresses(self) -> int:
        return int(self.last) - int(self.first) + 1

    @property
    def probes(self) -> int:
        return self.addresses * (count(self.tcp) + count(self.udp))

    @property
    def targets(self) -> tuple[str, ...]:
        """The address block as the fewest CIDR networks."""
        return _cidrs(self.first, self.last)


# Every source of a destination scans the same blocks: a large estate asks for
# the same few thousand summaries hundreds of thousands of times.
@functools.lru_cache(maxsize=65_536)
def _cidrs(first: IPv4Address, last: IPv4Address) -> tuple[str, ...]:
    return tuple(str(n) for n in summarize_address_range(first, last))


def plan(policy: Policy, pairs: tuple[Pair, ...] | None = None) -> list[Chunk]:
    """Every chunk needed to test ``pairs`` (all of the policy's by default)."""
    chunks: list[Chunk] = []
    for pair in pairs if pairs is not None else policy.pairs:
        dst = policy.subnets[pair.dst].cidr
        chunks.extend(_chunks(pair, dst, policy))

    return chunks


def _chunks(pair: Pair, dst: IPv4Network, policy: Policy) -> list[Chunk]:
    scan = policy.scan
    first, last = _host_range(dst)
    ports = count(scan.tcp) + count(scan.udp)
    per_chunk = max(1, scan.chunk_probes // ports)
    step = 2 ** int(math.log2(per_chunk))
    chunks = []
    start = int(first)
    while start <= int(last):
        end = min(int(last), (start // step + 1) * step - 1)
        chunks.append(
            Chunk(pair, IPv4Address(start), IPv4Address(end), scan.tcp, scan.udp)
        )
        start = end + 1

    return chunks


def _host_range(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    if cidr.prefixlen >= 31:
        return cidr.network_address, cidr.broadcast_address

    return cidr.network_address + 1, cidr.broadcast_address - 1


def to_assignment(chunk: Chunk, run_id: str, policy: Policy, now: float) -> Assignment:
    """A fresh, never re-sent assignment for ``chunk``."""
    scan = policy.scan

    return Assignment(
        id=uuid.uuid4().hex,
        run_id=run_id,
        src=chunk.pair.src,
        dst=chunk.pair.dst,
        targets=chunk.targets,
        tcp=chunk.tcp,
        udp=chunk.udp,
        rate_pps=scan.rate_pps,
        passes=scan.passes,
        issued_at=now,
        expires_at=now + ASSIGNMENT_TTL_S,
        kind=scan.engine,
    )


def estimate_s(chunks: list[Chunk], policy: Policy) -> float:
    """A generous bound on how long the busiest source agent needs."""
    per_src: dict[str, int] = {}
    for chunk in chunks:
        per_src[chunk.pair.src] = per_src.get(chunk.pair.src, 0) + chunk.probes
    busiest = max(per_src.values(), default=0)

    return busiest * policy.scan.passes / policy.scan.rate_pps
