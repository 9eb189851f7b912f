"""Turns a policy's directed pairs into assignment chunks.

A chunk is one source agent's work on a block of destination addresses and
ports, bounded by ``chunk_probes`` so that it finishes in minutes and a lost
chunk costs little to redo.  Network and broadcast addresses are left out;
every other address of the destination subnet is probed.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, summarize_address_range

from coordinator.policy import Pair, Policy, ScanSettings
from protocol.messages import Assignment
from protocol.ports import PortRanges, count

# How long an assignment may wait in a queue before agents must refuse it.
ASSIGNMENT_TTL_S = 3600.0


# A large estate plans hundreds of thousands of chunks: slots keep each small.
@dataclass(frozen=True, slots=True)
class Chunk:
    pair: Pair
    first: IPv4Address
    last: IPv4Address
    tcp: PortRanges
    udp: PortRanges
    targets: tuple[str, ...]  # the address block as the fewest CIDR networks
    probes: int

    @property
    def addresses(self) -> int:
        return int(self.last) - int(self.first) + 1


# A block of destination addresses: first, last, as the fewest CIDR networks,
# and its probes.
_Block = tuple[IPv4Address, IPv4Address, tuple[str, ...], int]


def plan(policy: Policy, pairs: tuple[Pair, ...] | None = None) -> list[Chunk]:
    """Every chunk needed to test ``pairs`` (all of the policy's by default)."""
    scan = policy.scan
    ports = count(scan.tcp) + count(scan.udp)
    # Every source of a destination gets the same blocks: cut each subnet once.
    blocks: dict[str, list[_Block]] = {}
    chunks: list[Chunk] = []
    for pair in pairs if pairs is not None else policy.pairs:
        if pair.dst not in blocks:
            blocks[pair.dst] = _blocks(policy.subnets[pair.dst].cidr, ports, scan)
        for first, last, targets, probes in blocks[pair.dst]:
            chunks.append(Chunk(pair, first, last, scan.tcp, scan.udp, targets, probes))

    return chunks


def _blocks(dst: IPv4Network, ports: int, scan: ScanSettings) -> list[_Block]:
    """The destination's hosts in aligned blocks of at most ``chunk_probes``."""
    first, last = _host_range(dst)
    step = 2 ** int(math.log2(max(1, scan.chunk_probes // ports)))
    blocks = []
    start = int(first)
    while start <= int(last):
        end = min(int(last), (start // step + 1) * step - 1)
        low, high = IPv4Address(start), IPv4Address(end)
        cidrs = tuple(str(n) for n in summarize_address_range(low, high))
        blocks.append((low, high, cidrs, (end - start + 1) * ports))
        start = end + 1

    return blocks


def _host_range(cidr: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    if cidr.prefixlen >= 31:
        return cidr.network_address, cidr.broadcast_address

    return cidr.network_address + 1, cidr.broadcast_address - 1


def to_assignment(chunk: Chunk, run_id: str, policy: Policy, now: float) -> Assignment:
    """A fresh, never re-sent assignment for ``chunk``."""
    scan = policy.scan

    return Assignment(
        id=_fresh_id(),
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


# Assignment ids are UUIDv7 (RFC 9562, section 5.7) as 32 hex digits: the
# Unix time in milliseconds first, so the ids of a plan ascend and the store
# appends them to its indexes instead of inserting all over them (a large
# estate plans hundreds of thousands at once).  A 42-bit counter, restarted
# each millisecond, follows (section 6.2, method 1), and 32 random bits.
_COUNTER_BITS = 42
_RANDOM_BITS = 32
_id_clock = [0, 0]  # the last id's millisecond and counter
_id_lock = threading.Lock()


def _fresh_id() -> str:
    with _id_lock:
        now_ms = time.time_ns() // 1_000_000
        last_ms, counter = _id_clock
        if now_ms > last_ms:
            last_ms, counter = now_ms, 0
        else:  # the same millisecond, or the clock stepped back: count on
            counter += 1
        _id_clock[:] = [last_ms, counter]
    rand_a, rand_b_high = divmod(counter, 1 << (_COUNTER_BITS - 12))
    rand_b = rand_b_high << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
    bits = last_ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b

    return f"{bits:032x}"


def estimate_s(chunks: list[Chunk], policy: Policy) -> float:
    """A generous bound on how long the busiest source agent needs."""
    per_src: dict[str, int] = {}
    for chunk in chunks:
        per_src[chunk.pair.src] = per_src.get(chunk.pair.src, 0) + chunk.probes
    busiest = max(per_src.values(), default=0)

    return busiest * policy.scan.passes / policy.scan.rate_pps
