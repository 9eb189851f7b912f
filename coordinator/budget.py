"""One rate budget per destination subnet, shared by every agent scanning it.

Design note.  The policy's ``scan.rate`` is what a destination subnet may
receive, not what each source may send: nine agents scanning one PCI subnet
at once must not hit it with nine times the rate.  So a destination's budget
is split into one equal share per source subnet that scans it, at most
``MAX_SLOTS``; a chunk is leased (sent to its source's queue) only while the
shares already leased against its destination leave room for one more, and
the agent scans it at its share.  The sum of the rates of the chunks leased
against a destination therefore never exceeds its budget, across runs too.
The cap keeps shares from shrinking to a trickle when hundreds of subnets
scan one destination: there the sources take turns instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.planner import Chunk
from coordinator.policy import Policy
from protocol.messages import Assignment

MAX_SLOTS = 16


@dataclass(frozen=True)
class Share:
    """A chunk's destination budget and the rate it is scanned at."""

    budget_pps: int
    rate_pps: int


@dataclass(frozen=True)
class Candidate:
    """A queued chunk that could be leased."""

    id: str
    dst: str
    budget_pps: int
    rate_pps: int


def slots(sources: int) -> int:
    """How many chunks may scan a destination that ``sources`` subnets scan."""
    return max(1, min(MAX_SLOTS, sources))


def slots_by_dst(pairs: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each destination's slots, from the directed (src, dst) pairs of its chunks."""
    sources: defaultdict[str, set[str]] = defaultdict(set)
    for src, dst in pairs:
        sources[dst].add(src)

    return {dst: slots(len(srcs)) for dst, srcs in sources.items()}


def share(assignment: Assignment, dst_slots: Mapping[str, int]) -> Share:
    """A planned assignment's share of its destination's budget.

    The planner sets every assignment's rate to the policy's rate, which is
    the destination's whole budget.
    """
    whole = assignment.rate_pps

    return Share(whole, max(1, whole // dst_slots[assignment.dst]))


def shares(assignments: Sequence[Assignment]) -> dict[str, Share]:
    """Each planned assignment's share of its destination's budget."""
    dst_slots = slots_by_dst((a.src, a.dst) for a in assignments)

    return {a.id: share(a, dst_slots) for a in assignments}


def choose(
    candidates: Iterable[Candidate], used_pps: Mapping[str, int]
) -> list[Candidate]:
    """The candidates, in order, that fit their destinations' budgets."""
    used = dict(used_pps)
    chosen = []
    for candidate in candidates:
        spent = used.get(candidate.dst, 0)
        if spent + candidate.rate_pps <= candidate.budget_pps:
            used[candidate.dst] = spent + candidate.rate_pps
            chosen.append(candidate)

    return chosen


def estimate_s(chunks: Iterable[Chunk], policy: Policy) -> float:
    """A bound on a run's scan time when every destination keeps its budget.

    The slower of the busiest destination at its whole budget and the busiest
    source at its shares.
    """
    rate = policy.scan.rate_pps
    per_pair: defaultdict[tuple[str, str], int] = defaultdict(int)
    for chunk in chunks:
        per_pair[(chunk.pair.src, chunk.pair.dst)] += chunk.probes
    dst_slots = slots_by_dst(per_pair)
    per_dst: defaultdict[str, float] = defaultdict(float)
    per_src: defaultdict[str, float] = defaultdict(float)
    for (src, dst), probes in per_pair.items():
        work = probes * policy.scan.passes
        per_dst[dst] += work / rate
        per_src[src] += work / max(1, rate // dst_slots[dst])

    return max([*per_dst.values(), *per_src.values()], default=0.0)
