"""The report's account of the assessment: people, tool, method, scope, witness,
limitations, and who saw each finding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from coordinator import assessment, report
from coordinator.policy import load_policy, parse_policy
from coordinator.verdict import PairJudgement, Verdict
from protocol.messages import Coverage, Finding, PortState, Proto, Reason
from tests.coordinator.sample import HOLE, pair


def test_the_founding_report_with_every_new_part_validates(
    founding: dict[str, Any],
) -> None:
    validator = Draft202012Validator(
        report.schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )

    assert [e.message for e in validator.iter_errors(founding)] == []
    assert founding["tool"]["name"] == "segscan"
    assert founding["method"]["engines"] == ["connect"]
    assert founding["transitive_paths"] == {"paths": [], "truncated": False}


def test_each_finding_names_the_agent_that_saw_it_and_when(
    founding: dict[str, Any],
) -> None:
    hole = pair(founding, *HOLE)
    opened = next(f for f in hole["findings"] if f["state"] == "open")

    assert opened["agent"] == "corp-b@test"
    assert opened["seen_at"].startswith(founding["started_at"][:10])


def test_scope_lists_segments_subnets_and_the_controls_tested(
    founding: dict[str, Any],
) -> None:
    scope = founding["scope"]
    controls = [
        (c["from"], c["to"], c["expect"], c["pairs"]) for c in scope["controls"]
    ]

    assert [s["name"] for s in scope["segments"]] == ["cde", "corp"]
    assert {"name": "cde-c", "cidr": "10.0.3.0/28"} in scope["segments"][0]["subnets"]
    assert controls == [
        ("corp", "cde", "closed", 27),
        ("cde", "corp", "open", 27),
    ]


def test_limitations_name_the_ports_and_protocols_left_out(
    founding: dict[str, Any],
) -> None:
    text = " ".join(founding["limitations"])

    assert "IPv6 was not tested" in text
    assert "the other 65531 UDP ports were not tested" in text
    assert "78 directed subnet pairs are covered by no rule" in text
    assert "No destination witness evidence" in text


def test_the_policy_assessment_section_names_tester_and_organisation() -> None:
    policy = parse_policy(
        "version: 1\nsegments: {a: {subnets: {a1: 10.0.0.0/28}},"
        " b: {subnets: {b1: 10.0.1.0/28}}}\n"
        "rules: [{from: a, to: b, expect: closed}]\n"
        "assessment: {tester: Ada Lovelace, organisation: Example Payments}\n"
    )

    assert assessment.people(policy) == {
        "tester": "Ada Lovelace",
        "organisation": "Example Payments",
    }


def test_a_full_port_range_is_no_limitation(founding_policy: Path) -> None:
    policy = load_policy(founding_policy)

    assert assessment._port_gap("TCP", ((1, 65535),)) == ""
    assert "UDP was not tested." in assessment._port_gap("UDP", ())
    assert policy.tester
    assert policy.organisation


def test_witness_counts_arrived_ports_and_forged_rsts() -> None:
    findings = (
        Finding("10.0.1.5", Proto.TCP, ((22, 23),), PortState.ARRIVED, Reason.WITNESS),
        Finding("10.0.1.5", Proto.TCP, ((80, 80),), PortState.REJECTED, Reason.RST),
    )
    judgement = PairJudgement(
        "a", "b", "closed", Verdict.FAIL, "", Coverage(3, 3, 3, 1), findings, 1, 1
    )

    witness = assessment.witness(judgement)

    assert (witness["arrived_ports"], witness["rejected_ports"]) == (2, 1)


def test_the_text_report_names_tester_tool_and_transitive_paths(
    founding: dict[str, Any],
) -> None:
    founding["assessment"]["tester"] = "Ada"
    founding["assessment"]["organisation"] = None
    founding["transitive_paths"]["paths"] = [
        {"path": ["corp-a", "corp-b", "cde-c"], "direct_verdict": "pass"}
    ]

    text = report.render_text(founding)

    assert "tester Ada (-)  tool segscan " in text
    assert "1 transitive paths, e.g. corp-a -> corp-b -> cde-c" in text
