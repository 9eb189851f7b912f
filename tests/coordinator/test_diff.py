"""Drift between two runs: new reachability is what matters, and says exit 1."""

from __future__ import annotations

import copy
from typing import Any

from coordinator import diff
from tests.coordinator.sample import HOLE, pair


def _close_the_hole(report: dict[str, Any]) -> dict[str, Any]:
    fixed = copy.deepcopy(report)
    fixed["run"] = "fixed"
    hole = pair(fixed, *HOLE)
    hole["verdict"] = "pass"
    hole["findings"] = [f for f in hole["findings"] if f["state"] != "open"]
    fixed["graph"]["edges"] = [
        e for e in fixed["graph"]["edges"] if (e["src"], e["dst"]) != HOLE
    ]

    return fixed


def test_a_hole_that_appears_is_new_reachability(founding: dict[str, Any]) -> None:
    drift = diff.compare(_close_the_hole(founding), founding)

    assert drift.new_reachability
    assert drift.edges_appeared == (HOLE,)
    assert [(c.ip, c.proto, c.ports) for c in drift.findings_appeared] == [
        ("10.0.3.5", "tcp", ((5432, 5432),))
    ]
    assert drift.verdicts_changed == (("corp-b", "cde-c", "pass", "fail"),)
    assert "+ edge corp-b -> cde-c" in diff.render_text(drift)


def test_a_hole_that_closed_is_drift_but_no_new_reachability(
    founding: dict[str, Any],
) -> None:
    drift = diff.compare(founding, _close_the_hole(founding))

    assert not drift.new_reachability
    assert drift.edges_vanished == (HOLE,)
    assert drift.as_dict()["findings_vanished"][0]["ports"] == [[5432, 5432]]


def test_a_run_against_itself_shows_no_change(founding: dict[str, Any]) -> None:
    drift = diff.compare(founding, founding)

    assert drift.as_dict()["new_reachability"] is False
    assert diff.render_text(drift).endswith("no change in reachability or verdicts")
