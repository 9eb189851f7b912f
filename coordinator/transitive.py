"""Transitive paths: how a subnet the policy keeps out reaches it through others.

PCI DSS scoping guidance puts a system in scope when it can reach the CDE,
directly or through another system.  So a path ``a -> b -> c`` of observed
edges matters whenever the policy expects ``a -> c`` closed, even if the
direct pair passed: the packet-level test of each hop is what proves it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Long chains add little for a reader and grow combinatorially.
MAX_HOPS = 4
MAX_PATHS = 200
MAX_WALKS = 200_000


@dataclass(frozen=True)
class TransitivePath:
    """A chain of reachable pairs from ``path[0]`` to ``path[-1]``."""

    path: tuple[str, ...]
    direct_verdict: str  # the verdict on the direct pair, first to last

    @property
    def src(self) -> str:
        return self.path[0]

    @property
    def dst(self) -> str:
        return self.path[-1]


def find(
    edges: Iterable[tuple[str, str]], closed: Mapping[tuple[str, str], str]
) -> tuple[list[TransitivePath], bool]:
    """Every simple path of 2 to ``MAX_HOPS`` observed edges ending where the policy
    expects its start kept out; ``closed`` maps such pairs to their verdicts.

    Returns the paths, shortest first, and whether the list was cut short.
    """
    out_edges: dict[str, list[str]] = defaultdict(list)
    for src, dst in sorted(set(edges)):
        out_edges[src].append(dst)
    found: list[TransitivePath] = []
    # Breadth first, so that a cut list keeps the shortest paths.
    frontier: deque[tuple[str, ...]] = deque(
        (src, dst) for src in out_edges for dst in out_edges[src]
    )
    walked = 0
    while frontier:
        path = frontier.popleft()
        walked += 1
        verdict = closed.get((path[0], path[-1]))
        if len(path) > 2 and verdict is not None:
            found.append(TransitivePath(path, verdict))
        if len(found) > MAX_PATHS or walked > MAX_WALKS:
            return found[:MAX_PATHS], True
        if len(path) <= MAX_HOPS:
            frontier.extend(
                (*path, nxt) for nxt in out_edges[path[-1]] if nxt not in path
            )

    return found, False
