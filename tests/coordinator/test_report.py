"""The run report: its JSON matches the published schema; text shows the matrix."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from coordinator import report
from coordinator.store import RunRecord
from coordinator.verdict import PairJudgement, Verdict
from protocol.messages import Coverage, Finding, PortState, Proto, Reason

RUN = RunRecord(
    id="20240101T000000-abcdef",
    kind="full",
    base_run=None,
    policy_source="deploy/lab/founding/policy.yaml",
    policy_text="version: 1\n",
    policy_sha256="ab" * 32,
    created_at=1_704_067_200.0,
    deadline=1_704_070_800.0,
    finished_at=1_704_067_500.5,
    verdict="fail",
    report=None,
)
FINDINGS = (
    Finding(
        "10.0.1.5", Proto.TCP, ((22, 22), (80, 81)), PortState.OPEN, Reason.SYN_ACK, 63
    ),
    Finding(
        "10.0.1.6",
        Proto.UDP,
        ((53, 53),),
        PortState.PROHIBITED,
        Reason.ADMIN_PROHIBITED,
    ),
)
COVERAGE = Coverage(planned=42, sent=42, answered=2, passes=2)


def _judgement(
    src: str, dst: str, verdict: Verdict, *findings: Finding, expect: str = "closed"
) -> PairJudgement:
    return PairJudgement(
        src, dst, expect, verdict, f"{verdict} because", COVERAGE, findings, 2, 1
    )


JUDGEMENTS = [
    _judgement("corp-a", "cde-a", Verdict.FAIL, *FINDINGS),
    _judgement("corp-a", "cde-b", Verdict.PASS),
    _judgement("corp-b", "cde-a", Verdict.INCONCLUSIVE),
    _judgement("corp-b", "cde-b", Verdict.PENDING),
    _judgement("cde-a", "corp-a", Verdict.ALLOWED, FINDINGS[0], expect="open"),
]


def _validate(body: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(
        report.schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )

    return [error.message for error in validator.iter_errors(body)]


def test_the_schema_is_itself_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(report.schema())

    assert report.schema()["$id"].endswith("report-1.json")


def test_a_finished_report_validates_against_the_schema() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    assert _validate(body) == []
    assert body["verdict"] == "fail"
    assert body["finished_at"] == "2024-01-01T00:05:00+00:00"
    assert body["started_at"] == "2024-01-01T00:00:00+00:00"


def test_a_live_rescan_report_validates_against_the_schema() -> None:
    live = RunRecord(
        **{**RUN.__dict__, "kind": "rescan", "base_run": "r0", "finished_at": None}
    )

    body = report.build(live, JUDGEMENTS[1:4], Verdict.PENDING)

    assert _validate(body) == []
    assert (body["kind"], body["base_run"], body["finished_at"]) == (
        "rescan",
        "r0",
        None,
    )


def test_the_schema_rejects_what_the_contract_forbids() -> None:
    """The validator is not vacuous: a bad verdict and an extra key are caught."""
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)
    body["verdict"] = "maybe"
    body["pairs"][0]["extra"] = 1

    errors = _validate(body)

    assert len(errors) == 2


def test_pairs_carry_coverage_and_every_finding() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    pair = body["pairs"][0]
    assert pair["coverage"] == {
        "planned": 42,
        "sent": 42,
        "answered": 2,
        "passes": 2,
        "chunks": 2,
        "chunks_done": 1,
    }
    assert pair["findings"][0] == {
        "ip": "10.0.1.5",
        "proto": "tcp",
        "ports": [[22, 22], [80, 81]],
        "state": "open",
        "reason": "syn-ack",
        "ttl": 63,
    }
    assert pair["findings"][1]["ttl"] is None


def test_the_graph_has_an_edge_per_reachable_pair() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    assert body["graph"]["edges"] == [
        {"src": "corp-a", "dst": "cde-a", "reachable_ports": 3, "violation": True},
        {"src": "cde-a", "dst": "corp-a", "reachable_ports": 3, "violation": False},
    ]


def test_the_matrix_shows_one_mark_per_pair() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    lines = report.render_matrix(body).splitlines()

    assert lines[0].split() == ["cde-a", "cde-b", "corp-a"]
    assert lines[1].split() == ["cde-a", "o"]
    assert lines[2].split() == ["corp-a", "X", "."]
    assert lines[3].split() == ["corp-b", "?", "~"]
    assert lines[4].startswith("(. pass, X fail, o allowed, ? inconclusive, ~ pending;")


def test_the_text_report_shows_verdict_matrix_and_the_failures() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    text = report.render_text(body)

    assert text.startswith("run 20240101T000000-abcdef (full)  verdict: FAIL")
    assert report.render_matrix(body) in text
    assert "pairs: 1 allowed, 1 fail, 1 inconclusive, 1 pass, 1 pending" in text
    assert "  FAIL         corp-a -> cde-a: fail because" in text
    assert "  INCONCLUSIVE corp-b -> cde-a: inconclusive because" in text
    assert "      10.0.1.5        tcp 22,80-81 open (syn-ack)" in text


def test_the_text_report_lists_only_reachable_findings() -> None:
    body = report.build(RUN, JUDGEMENTS, Verdict.FAIL)

    text = report.render_text(body)

    assert "10.0.1.6" not in text
    assert "corp-a -> cde-b" not in text


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_has_a_matrix_mark(verdict: Verdict) -> None:
    assert len(report.MATRIX_MARKS[verdict]) == 1
