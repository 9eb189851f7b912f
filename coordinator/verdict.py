"""Judging each directed pair against the policy, and the run as a whole.

Reachable means ``open``, ``closed`` or ``arrived``: a RST from beyond the
boundary proves the packet crossed it.  Silence is never a pass: a pair whose
chunks did not all come back with complete coverage is ``inconclusive``,
unless what did come back already proves a violation.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.store import PairRecord
from protocol.messages import Coverage, Finding, Proto, Result
from protocol.ports import PortRanges, format_ports, subtract
from protocol.witnessing import WitnessView, combine


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ALLOWED = "allowed"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"  # the run is still waiting for this pair's chunks


class Planned(Protocol):
    """What a verdict reads of a chunk (store.ChunkRecord, outcomes.ChunkOutcome)."""

    @property
    def id(self) -> str: ...

    @property
    def probes(self) -> int: ...

    @property
    def state(self) -> str: ...

    @property
    def dead_reason(self) -> str | None: ...

    @property
    def targets(self) -> tuple[str, ...] | None: ...


# A thousand-subnet run is judged into 180,000 of these: slots keep each small.
@dataclass(frozen=True, slots=True)
class PairJudgement:
    """The verdict on one directed pair, with what it rests on."""

    src: str
    dst: str
    expect: str
    verdict: Verdict
    reason: str
    coverage: Coverage
    findings: tuple[Finding, ...]
    chunks: int
    chunks_done: int

    @property
    def reachable(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.state.reachable)


def judge_pair(
    pair: PairRecord,
    pair_chunks: Sequence[Planned],
    results: dict[str, Result],
    final: bool,
    witnesses: Sequence[WitnessView] = (),
) -> PairJudgement:
    """Judge one pair from its chunks' results; ``final`` once the run is over.

    ``witnesses`` are the destination witnesses' views of the pair's probes:
    they turn forged RSTs into ``rejected`` and silent arrivals into ``arrived``.
    """
    got = [results[c.id] for c in pair_chunks if c.id in results]
    findings = tuple(f for r in got for f in r.findings)
    if witnesses:
        findings = combine(findings, witnesses)
    coverage = _sum_coverage(got)
    gaps = _gaps(pair_chunks, results)
    reachable = [f for f in findings if f.state.reachable]

    verdict, reason = _decide(pair, reachable, gaps, final)

    return PairJudgement(
        pair.src,
        pair.dst,
        pair.expect,
        verdict,
        reason,
        coverage,
        findings,
        len(pair_chunks),
        len(got),
    )


def _decide(
    pair: PairRecord, reachable: list[Finding], gaps: list[str], final: bool
) -> tuple[Verdict, str]:
    if pair.expect == "closed" and reachable:
        return Verdict.FAIL, "reachable where closed is expected: " + _brief(reachable)
    outside = _outside_allowed(pair, reachable)
    if outside:
        return Verdict.FAIL, "reachable outside the allowed ports: " + _brief(outside)
    if gaps and not final:
        return Verdict.PENDING, "; ".join(gaps)
    if gaps:
        return Verdict.INCONCLUSIVE, "; ".join(gaps)
    if pair.expect == "closed":
        return Verdict.PASS, "nothing reachable, coverage complete"
    if reachable:
        return Verdict.ALLOWED, f"{_port_count(reachable)} reachable ports, allowed"

    return Verdict.ALLOWED, "allowed, though nothing answered"


def _gaps(pair_chunks: Sequence[Planned], results: dict[str, Result]) -> list[str]:
    missing = [c for c in pair_chunks if c.id not in results]
    gaps = _missing(missing, len(pair_chunks))
    for chunk in pair_chunks:
        result = results.get(chunk.id)
        if result is None:
            continue
        cov = result.coverage
        if result.error:
            gaps.append(f"agent {result.agent} failed a chunk: {result.error}")
        elif cov.sent < chunk.probes or cov.planned < chunk.probes:
            gaps.append(f"only {cov.sent} of {chunk.probes} probes sent")
        elif cov.dropped:
            gaps.append(f"the kernel dropped {cov.dropped} probes or replies")

    return gaps


def _missing(missing: Sequence[Planned], planned: int) -> list[str]:
    """Why chunks have no result: dead-lettered (named), or still out."""
    gaps = [
        f"chunk {c.id} ({', '.join(c.targets or ())}) lost: {c.dead_reason}"
        for c in missing
        if c.state == "dead"
    ]
    out = [c for c in missing if c.state != "dead"]
    if out:
        gaps.append(f"{len(out)} of {planned} chunks without a result")

    return gaps


def _outside_allowed(pair: PairRecord, reachable: list[Finding]) -> list[Finding]:
    if pair.expect != "open" or pair.allowed is None or not reachable:
        return []
    allowed: dict[Proto, PortRanges] = {
        proto: tuple((first, last) for first, last in pair.allowed.get(proto, []))
        for proto in Proto
    }
    outside = []
    for finding in reachable:
        extra = subtract(finding.ports, allowed[finding.proto])
        if extra:
            outside.append(
                Finding(
                    finding.ip,
                    finding.proto,
                    extra,
                    finding.state,
                    finding.reason,
                    finding.ttl,
                )
            )

    return outside


def _sum_coverage(got: Iterable[Result]) -> Coverage:
    planned = sent = answered = dropped = passes = 0
    for result in got:
        cov = result.coverage
        planned += cov.planned
        sent += cov.sent
        answered += cov.answered
        dropped += cov.dropped
        passes = max(passes, cov.passes)

    return Coverage(planned, sent, answered, passes, dropped)


def _port_count(findings: Iterable[Finding]) -> int:
    return sum(last - first + 1 for f in findings for first, last in f.ports)


def _brief(findings: Sequence[Finding], most: int = 3) -> str:
    parts = [
        f"{f.ip} {f.proto} {format_ports(f.ports)} {f.state}" for f in findings[:most]
    ]
    if len(findings) > most:
        parts.append(f"and {len(findings) - most} more")

    return ", ".join(parts)


def overall(judgements: Iterable[PairJudgement]) -> Verdict:
    """The run's verdict: any violation fails it; any doubt makes it inconclusive."""
    verdicts = {j.verdict for j in judgements}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.PENDING in verdicts:
        return Verdict.PENDING
    if Verdict.INCONCLUSIVE in verdicts or not verdicts:
        return Verdict.INCONCLUSIVE

    return Verdict.PASS
