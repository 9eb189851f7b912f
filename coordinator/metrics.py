"""The coordinator's Prometheus metrics, served at ``GET /metrics``.

Counters and the intake latency histogram are kept in process as results
arrive; chunk states and agent liveness are read from the store at scrape
time, so every coordinator task behind a load balancer reports the same
picture of the database.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

RESULTS = Counter(
    "segscan_results",
    "Result posts taken in, by what became of them.",
    ["outcome"],
    registry=REGISTRY,
)
FINDINGS = Counter(
    "segscan_findings",
    "Findings in the results stored and counted.",
    registry=REGISTRY,
)
INTAKE_SECONDS = Histogram(
    "segscan_intake_seconds",
    "Time from a result reaching the store to its being committed.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
CHUNKS = Gauge(
    "segscan_chunks",
    "Chunks of every run in the store, by state.",
    ["state"],
    registry=REGISTRY,
)
UNSETTLED = Gauge(
    "segscan_unsettled_chunks",
    "Chunks of unfinished runs that are neither done nor dead.",
    registry=REGISTRY,
)
AGENTS = Gauge(
    "segscan_agents",
    "Agents that ever sent a heartbeat, live or silent.",
    ["state"],
    registry=REGISTRY,
)
AGENT_SILENCE = Gauge(
    "segscan_agent_silence_seconds",
    "Seconds since each agent's last heartbeat.",
    ["agent", "subnet"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "segscan_dead_letters",
    "Messages taken off dead-letter queues and kept as evidence.",
    registry=REGISTRY,
)


def count_intake(outcomes: Iterable[str], findings: int) -> None:
    """Count one batch of result posts and the findings they stored."""
    for outcome in outcomes:
        RESULTS.labels(outcome).inc()
    FINDINGS.inc(findings)


def set_chunks(by_state: dict[str, int], unsettled: int) -> None:
    """Publish the chunk counts read from the store."""
    for state in ("queued", "leased", "done", "dead"):
        CHUNKS.labels(state).set(by_state.get(state, 0))
    UNSETTLED.set(unsettled)


def set_agents(
    seen: Iterable[tuple[str, str, float]], silent_after_s: float, now: float
) -> None:
    """Publish each agent's silence, from (agent, subnet, last seen) triples."""
    AGENT_SILENCE.clear()
    live = silent = 0
    for agent, subnet, last_seen in seen:
        quiet_s = max(0.0, now - last_seen)
        AGENT_SILENCE.labels(agent, subnet).set(round(quiet_s, 1))
        if quiet_s > silent_after_s:
            silent += 1
        else:
            live += 1
    AGENTS.labels("live").set(live)
    AGENTS.labels("silent").set(silent)


def render() -> bytes:
    """The text exposition format of every metric."""
    return generate_latest(REGISTRY)


__all__ = ["CONTENT_TYPE", "render"]
