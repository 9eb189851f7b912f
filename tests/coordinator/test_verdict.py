"""Verdicts: reachable where closed fails, silence never passes, run ordering."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from coordinator.store import ChunkRecord, PairRecord
from coordinator.verdict import PairJudgement, Verdict, judge_pair, overall
from protocol.messages import (
    Assignment,
    Coverage,
    Finding,
    PortState,
    Proto,
    Reason,
    Result,
)
from protocol.ports import PortRanges

CLOSED = PairRecord("corp-a", "cde-a", "closed", None)
OPEN = PairRecord("cde-a", "corp-a", "open", None)
PROBES = 14 * 3


def _chunk(chunk_id: str = "c1", pair: PairRecord = CLOSED) -> ChunkRecord:
    assignment = Assignment(
        id=chunk_id,
        run_id="run-1",
        src=pair.src,
        dst=pair.dst,
        targets=("10.0.1.0/28",),
        tcp=((22, 22), (80, 80), (443, 443)),
        udp=(),
        rate_pps=1000,
        passes=2,
        issued_at=0.0,
        expires_at=3600.0,
    )

    return ChunkRecord(chunk_id, pair.src, pair.dst, PROBES, "done", assignment)


def _finding(
    state: PortState,
    ports: PortRanges = ((22, 22),),
    proto: Proto = Proto.TCP,
    ip: str = "10.0.1.5",
) -> Finding:
    reason = {
        PortState.OPEN: Reason.SYN_ACK,
        PortState.CLOSED: Reason.RST,
        PortState.ARRIVED: Reason.WITNESS,
        PortState.PROHIBITED: Reason.ADMIN_PROHIBITED,
    }.get(state, Reason.NO_RESPONSE)

    return Finding(ip, proto, ports, state, reason, 62)


def _result(
    chunk: ChunkRecord, *findings: Finding, error: str | None = None, **coverage: int
) -> Result:
    counts: dict[str, Any] = {
        "planned": PROBES,
        "sent": PROBES,
        "answered": len(findings),
        "passes": 2,
    } | coverage

    return Result(
        assignment_id=chunk.id,
        run_id="run-1",
        src=chunk.src,
        dst=chunk.dst,
        agent=f"{chunk.src}@host",
        engine="syn",
        started_at=1.0,
        finished_at=2.0,
        coverage=Coverage(**counts),
        findings=findings,
        error=error,
    )


def _judge(
    pair: PairRecord, *results: Result, chunks: int = 1, final: bool = True
) -> PairJudgement:
    pair_chunks = [_chunk(f"c{i}", pair) for i in range(1, chunks + 1)]
    by_id = {r.assignment_id: r for r in results}

    return judge_pair(pair, pair_chunks, by_id, final)


def test_closed_with_nothing_reachable_and_full_coverage_passes() -> None:
    judgement = _judge(CLOSED, _result(_chunk()))

    assert judgement.verdict is Verdict.PASS
    assert judgement.reason == "nothing reachable, coverage complete"
    assert (judgement.chunks, judgement.chunks_done) == (1, 1)


@pytest.mark.parametrize("state", [PortState.OPEN, PortState.CLOSED, PortState.ARRIVED])
def test_closed_with_anything_reachable_fails(state: PortState) -> None:
    """A RST or a witness sighting proves the packet crossed the boundary."""
    judgement = _judge(CLOSED, _result(_chunk(), _finding(state)))

    assert judgement.verdict is Verdict.FAIL
    assert judgement.reason == (
        f"reachable where closed is expected: 10.0.1.5 tcp 22 {state}"
    )


@pytest.mark.parametrize("final", [False, True])
def test_a_violation_fails_even_while_coverage_is_incomplete(final: bool) -> None:
    partial = _result(_chunk("c1"), _finding(PortState.OPEN), sent=3, error="crashed")

    judgement = _judge(CLOSED, partial, chunks=2, final=final)

    assert judgement.verdict is Verdict.FAIL
    assert judgement.chunks_done == 1


@pytest.mark.parametrize(
    "state",
    [
        PortState.PROHIBITED,
        PortState.FILTERED,
        PortState.REJECTED,
        PortState.OPEN_FILTERED,
    ],
)
def test_unreachable_states_do_not_fail_a_closed_pair(state: PortState) -> None:
    judgement = _judge(CLOSED, _result(_chunk(), _finding(state)))

    assert judgement.verdict is Verdict.PASS
    assert judgement.reachable == ()
    assert len(judgement.findings) == 1


def test_a_missing_chunk_is_pending_while_the_run_is_running() -> None:
    judgement = _judge(CLOSED, _result(_chunk("c1")), chunks=2, final=False)

    assert judgement.verdict is Verdict.PENDING
    assert judgement.reason == "1 of 2 chunks without a result"


def test_a_missing_chunk_is_inconclusive_once_the_run_is_over() -> None:
    """Silence is never a pass."""
    judgement = _judge(CLOSED, _result(_chunk("c1")), chunks=2, final=True)

    assert judgement.verdict is Verdict.INCONCLUSIVE
    assert (judgement.chunks, judgement.chunks_done) == (2, 1)


def test_no_result_at_all_is_inconclusive_once_final() -> None:
    judgement = _judge(CLOSED, final=True)

    assert judgement.verdict is Verdict.INCONCLUSIVE
    assert judgement.reason == "1 of 1 chunks without a result"


@pytest.mark.parametrize(
    ("coverage", "error", "says"),
    [
        ({}, "raw socket refused", "failed a chunk: raw socket refused"),
        ({"sent": PROBES - 1}, None, f"only {PROBES - 1} of {PROBES} probes sent"),
        ({"planned": 10, "sent": 10}, None, f"only 10 of {PROBES} probes sent"),
        ({"dropped": 7}, None, "the kernel dropped 7 probes or replies"),
    ],
)
@pytest.mark.parametrize("pair", [CLOSED, OPEN], ids=["closed", "open"])
def test_incomplete_coverage_is_inconclusive(
    pair: PairRecord, coverage: dict[str, int], error: str | None, says: str
) -> None:
    result = _result(_chunk("c1", pair), error=error, **coverage)

    judgement = _judge(pair, result)

    assert judgement.verdict is Verdict.INCONCLUSIVE
    assert says in judgement.reason


def test_open_without_ports_allows_whatever_is_reachable() -> None:
    findings = (
        _finding(PortState.OPEN, ((22, 22), (80, 80)), ip="172.16.1.5"),
        _finding(PortState.CLOSED, ((1, 10),), proto=Proto.UDP, ip="172.16.1.6"),
    )

    judgement = _judge(OPEN, _result(_chunk("c1", OPEN), *findings))

    assert judgement.verdict is Verdict.ALLOWED
    assert judgement.reason == "12 reachable ports, allowed"
    assert judgement.reachable == findings


def test_open_with_nothing_answering_is_still_allowed() -> None:
    judgement = _judge(OPEN, _result(_chunk("c1", OPEN)))

    assert judgement.verdict is Verdict.ALLOWED
    assert judgement.reason == "allowed, though nothing answered"


def test_open_with_only_allowed_ports_reachable_is_allowed() -> None:
    pair = replace(OPEN, allowed={"tcp": [[443, 443]], "udp": [[53, 53]]})
    findings = (
        _finding(PortState.OPEN, ((443, 443),)),
        _finding(PortState.OPEN, ((53, 53),), proto=Proto.UDP),
        _finding(PortState.FILTERED, ((1, 442),)),
    )

    judgement = _judge(pair, _result(_chunk("c1", pair), *findings))

    assert judgement.verdict is Verdict.ALLOWED


def test_open_with_a_reachable_port_outside_the_allowed_ones_fails() -> None:
    pair = replace(OPEN, allowed={"tcp": [[443, 443]], "udp": []})
    findings = (_finding(PortState.OPEN, ((440, 450),)),)

    judgement = _judge(pair, _result(_chunk("c1", pair), *findings))

    assert judgement.verdict is Verdict.FAIL
    assert judgement.reason == (
        "reachable outside the allowed ports: 10.0.1.5 tcp 440-442,444-450 open"
    )


def test_allowed_tcp_ports_do_not_allow_the_same_udp_ports() -> None:
    pair = replace(OPEN, allowed={"tcp": [[53, 53]], "udp": []})

    judgement = _judge(
        pair,
        _result(_chunk("c1", pair), _finding(PortState.OPEN, ((53, 53),), Proto.UDP)),
    )

    assert judgement.verdict is Verdict.FAIL
    assert "10.0.1.5 udp 53 open" in judgement.reason


def test_an_outside_port_fails_even_before_the_run_is_over() -> None:
    pair = replace(OPEN, allowed={"tcp": [[443, 443]], "udp": []})
    first = _result(_chunk("c1", pair), _finding(PortState.CLOSED, ((22, 22),)))

    judgement = _judge(pair, first, chunks=3, final=False)

    assert judgement.verdict is Verdict.FAIL


def test_the_reason_lists_three_findings_and_counts_the_rest() -> None:
    findings = [_finding(PortState.OPEN, ip=f"10.0.1.{i}") for i in range(1, 6)]

    judgement = _judge(CLOSED, _result(_chunk(), *findings))

    assert judgement.reason.endswith("10.0.1.3 tcp 22 open, and 2 more")


def test_coverage_is_summed_over_the_pairs_chunks() -> None:
    results = [_result(_chunk(f"c{i}"), answered=i, dropped=0) for i in (1, 2)]

    judgement = _judge(CLOSED, *results, chunks=2)

    assert judgement.coverage == Coverage(2 * PROBES, 2 * PROBES, 3, 2, 0)
    assert judgement.verdict is Verdict.PASS


def _judgement(verdict: Verdict) -> PairJudgement:
    return PairJudgement(
        "a", "b", "closed", verdict, "", Coverage(0, 0, 0, 0), (), 1, 1
    )


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([Verdict.PASS, Verdict.ALLOWED], Verdict.PASS),
        ([Verdict.ALLOWED], Verdict.PASS),
        ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([Verdict.INCONCLUSIVE, Verdict.PENDING], Verdict.PENDING),
        ([Verdict.PENDING, Verdict.FAIL, Verdict.INCONCLUSIVE], Verdict.FAIL),
        ([Verdict.ALLOWED, Verdict.FAIL], Verdict.FAIL),
        ([], Verdict.INCONCLUSIVE),
    ],
)
def test_overall_orders_fail_then_pending_then_inconclusive_then_pass(
    verdicts: list[Verdict], expected: Verdict
) -> None:
    """Allowed counts as a pass; a run judged on nothing is inconclusive."""
    result = overall(_judgement(v) for v in verdicts)

    assert result is expected
