"""The subnet-to-subnet reachability graph a run observed.

An edge ``src -> dst`` exists when some probe from ``src`` proved it crossed
into ``dst``; it is a violation when the policy expected that pair closed or
the reachable ports fall outside the allowed ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.verdict import PairJudgement, Verdict


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    ports: int  # reachable (address, port) combinations seen
    violation: bool


def edges(judgements: Iterable[PairJudgement]) -> list[Edge]:
    """One edge per pair on which anything was reachable."""
    out = []
    for j in judgements:
        reachable = j.reachable
        if reachable:
            ports = sum(last - first + 1 for f in reachable for first, last in f.ports)
            out.append(Edge(j.src, j.dst, ports, j.verdict is Verdict.FAIL))

    return out
