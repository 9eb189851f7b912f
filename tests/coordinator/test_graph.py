"""The reachability graph: an edge per pair where anything crossed."""

from __future__ import annotations

from coordinator.graph import Edge, edges
from coordinator.verdict import PairJudgement, Verdict
from protocol.messages import Coverage, Finding, PortState, Proto, Reason

OPEN_22 = Finding("10.0.1.5", Proto.TCP, ((22, 22),), PortState.OPEN, Reason.SYN_ACK)
RST_RANGE = Finding("10.0.1.6", Proto.TCP, ((1, 10),), PortState.CLOSED, Reason.RST)
SILENT = Finding(
    "10.0.1.7", Proto.UDP, ((53, 53),), PortState.FILTERED, Reason.NO_RESPONSE
)


def _judgement(
    src: str, dst: str, verdict: Verdict, *findings: Finding
) -> PairJudgement:
    coverage = Coverage(10, 10, len(findings), 1)

    return PairJudgement(src, dst, "closed", verdict, "", coverage, findings, 1, 1)


def test_an_edge_counts_every_reachable_address_and_port() -> None:
    judged = [_judgement("corp-a", "cde-a", Verdict.FAIL, OPEN_22, RST_RANGE, SILENT)]

    graph = edges(judged)

    assert graph == [Edge("corp-a", "cde-a", 11, violation=True)]


def test_pairs_where_nothing_crossed_have_no_edge() -> None:
    judged = [
        _judgement("corp-a", "cde-a", Verdict.PASS, SILENT),
        _judgement("corp-a", "cde-b", Verdict.INCONCLUSIVE),
    ]

    graph = edges(judged)

    assert graph == []


def test_only_a_failed_pair_makes_a_violation_edge() -> None:
    judged = [
        _judgement("cde-a", "corp-a", Verdict.ALLOWED, OPEN_22),
        _judgement("corp-a", "cde-a", Verdict.FAIL, OPEN_22),
    ]

    graph = edges(judged)

    assert [(e.src, e.dst, e.violation) for e in graph] == [
        ("cde-a", "corp-a", False),
        ("corp-a", "cde-a", True),
    ]
