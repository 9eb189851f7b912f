"""The founding case end to end: the netns lab, moto's SQS, agents, coordinator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from coordinator.report import schema
from tests.e2e.conftest import cli as _cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

CDE = [f"cde-{c}" for c in "abcdefghi"]
CORP = ["corp-a", "corp-b", "corp-c"]
HOLE = ("corp-b", "cde-c")  # corp-b may reach 10.0.3.5 on tcp/5432


def _verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(p["src"], p["dst"]): p["verdict"] for p in report["pairs"]}


def test_every_pair_gets_its_expected_verdict(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    """Only the planted hole fails; corp -> cde passes; cde -> corp is allowed."""
    code, report = founding_run
    expected = {(s, d): "pass" for s in CORP for d in CDE}
    expected |= {(s, d): "allowed" for s in CDE for d in CORP}
    expected[HOLE] = "fail"

    assert _verdicts(report) == expected
    assert report["verdict"] == "fail"
    assert code == 1


def test_the_hole_is_reported_as_exactly_one_open_port(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    """The failing pair's reachable finding is 10.0.3.5 tcp/5432 open."""
    _, report = founding_run
    pair = next(p for p in report["pairs"] if (p["src"], p["dst"]) == HOLE)
    reachable = [
        (f["ip"], f["proto"], f["ports"], f["state"])
        for f in pair["findings"]
        if f["state"] in ("open", "closed", "arrived")
    ]

    assert reachable == [("10.0.3.5", "tcp", [[5432, 5432]], "open")]


def test_the_witness_tells_a_rejecting_firewall_from_a_hole(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    """The transit answers corp-a's SSH probe of cde-b's agent with its own RST;
    cde-b's witness never saw the probe, so the pair passes with it rejected."""
    _, report = founding_run
    pair = next(
        p for p in report["pairs"] if (p["src"], p["dst"]) == ("corp-a", "cde-b")
    )
    answered = [
        (f["ip"], f["proto"], f["ports"], f["state"], f["reason"])
        for f in pair["findings"]
        if f["state"] not in ("filtered", "open|filtered")
    ]

    assert pair["verdict"] == "pass"
    assert answered == [("10.0.2.4", "tcp", [[22, 22]], "rejected", "rst")]
    assert pair["witness"]["rejected_ports"] == 1


def test_allowed_pairs_list_the_listening_workloads(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    """cde -> corp-a shows 172.16.1.5's listeners open, with complete coverage."""
    _, report = founding_run
    pair = next(
        p for p in report["pairs"] if (p["src"], p["dst"]) == ("cde-a", "corp-a")
    )
    open_tcp = {
        (f["ip"], tuple(map(tuple, f["ports"])))
        for f in pair["findings"]
        if f["state"] == "open" and f["proto"] == "tcp"
    }

    assert ("172.16.1.5", ((80, 80), (443, 443))) in open_tcp
    assert pair["coverage"]["sent"] >= pair["coverage"]["planned"] > 0


def test_report_matches_its_schema(founding_run: tuple[int, dict[str, Any]]) -> None:
    """The JSON report validates against the published schema, 54 pairs."""
    _, report = founding_run
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    validator.validate(report)
    assert len(report["pairs"]) == 54


def test_rescan_reruns_one_pair_and_report_shows_it(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    """``rescan --pair`` runs both directions of one pair as a new run."""
    base = founding_run[1]["run"]
    done = _cli("coordinator", "rescan", "--pair", "corp-b:cde-c", "--wait", "--json")
    rescan = json.loads(done.stdout)
    shown = _cli("coordinator", "report", "--format", "json")

    assert done.returncode == 1
    assert rescan["base_run"] == base
    assert _verdicts(rescan) == {HOLE: "fail", ("cde-c", "corp-b"): "allowed"}
    assert json.loads(shown.stdout)["run"] == rescan["run"]


def test_unknown_subnet_in_rescan_is_one_line_and_exit_2(lab: None) -> None:
    """A typo in --pair names the subnet and lists the known ones."""
    done = _cli("coordinator", "rescan", "--pair", "corp-b:cde-z")

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "cde-z" in done.stderr
    assert "Traceback" not in done.stderr
