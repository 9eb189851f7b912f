"""How a run is going right now: pairs done, probe rate, and silent agents.

An agent is silent when no heartbeat came from its subnet for ``SILENT_S``;
while a run waits on such a subnet its pairs can only end inconclusive, which
is what an operator watching the dashboard needs to know early.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from coordinator.store import ChunkState, RunRecord, Store

SILENT_S = 30.0


async def snapshot(
    store: Store, run: RunRecord, now: float | None = None
) -> dict[str, Any]:
    """The run's live figures, as JSON-ready data."""
    now = time.time() if now is None else now
    chunks = await store.chunks(run.id)
    per_pair: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for chunk in chunks:
        per_pair[(chunk.src, chunk.dst)].append(chunk.state == ChunkState.DONE)
    sent = sum(r.coverage.sent for r in await store.results(run.id))
    elapsed = max(0.001, (run.finished_at or now) - run.created_at)
    finished = run.finished_at is not None
    sources = {c.src for c in chunks}

    return {
        "run": run.id,
        "kind": run.kind,
        "finished": finished,
        "verdict": run.verdict,
        "pairs": len(per_pair),
        "pairs_done": sum(all(done) for done in per_pair.values()),
        "chunks": len(chunks),
        "chunks_done": sum(sum(done) for done in per_pair.values()),
        "probes_sent": sent,
        "elapsed_s": round(elapsed, 1),
        "rate_pps": round(sent / elapsed, 1),
        "silent_agents": [] if finished else await _silent(store, sources, now),
    }


async def _silent(store: Store, subnets: set[str], now: float) -> list[str]:
    last: dict[str, float] = {}
    for agent in await store.agents():
        last[agent.subnet] = max(last.get(agent.subnet, 0.0), agent.last_seen)

    return sorted(s for s in subnets if now - last.get(s, 0.0) > SILENT_S)
