"""The graph drawing: one node per subnet inside its segment, one arrow per edge."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from coordinator import svg

NS = {"s": "http://www.w3.org/2000/svg"}


def test_the_drawing_is_well_formed_svg_with_every_subnet(
    founding: dict[str, Any],
) -> None:
    root = ET.fromstring(svg.render(founding))
    nodes = [g.get("data-subnet") for g in root.iterfind(".//s:g", NS)]
    segments = [g.get("data-segment") for g in root.iterfind(".//s:g", NS)]

    assert {n for n in nodes if n} == {f"cde-{c}" for c in "abcdefghi"} | {
        "corp-a",
        "corp-b",
        "corp-c",
    }
    assert [s for s in segments if s] == ["cde", "corp"]


def test_one_arrow_per_edge_and_the_violation_drawn_last(
    founding: dict[str, Any],
) -> None:
    drawing = svg.render(founding)
    edges = re.findall(r'<g class="(edge[^"]*)" data-src="([\w-]+)"', drawing)

    assert len(edges) == len(founding["graph"]["edges"]) == 19
    assert edges[-1] == ("edge violation", "corp-b")
    assert 'class="node hit" data-subnet="cde-c"' in drawing


def test_opposite_edges_take_different_routes() -> None:
    """a -> b and b -> a leave above and arrive below the middle: no overlap."""
    there, _ = svg._curve((100, 100), (500, 100), True)
    back, _ = svg._curve((500, 100), (100, 100), False)

    assert there != back


def test_edges_on_a_transitive_path_are_marked(founding: dict[str, Any]) -> None:
    founding["transitive_paths"] = {
        "paths": [{"path": ["cde-a", "corp-b", "cde-c"], "direct_verdict": "pass"}],
        "truncated": False,
    }
    drawing = svg.render(founding)

    assert re.search(r'class="edge violation transitive" data-src="corp-b"', drawing)
    assert 'data-subnet="cde-a"' in svg.chain(["cde-a", "corp-b", "cde-c"])
