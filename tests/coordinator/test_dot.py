"""The Graphviz export: clusters per segment, red violations, names quoted."""

from __future__ import annotations

import re
from typing import Any

from coordinator import dot


def test_segments_are_clusters_and_the_hole_is_red(founding: dict[str, Any]) -> None:
    text = dot.render(founding)
    edges = re.findall(r'^  "([\w-]+)" -> "([\w-]+)" \[([^\]]*)\];$', text, re.M)

    assert text.startswith('digraph "segscan ')
    assert text.count("subgraph cluster_") == 2
    assert len(edges) == 19
    assert [(s, d) for s, d, attrs in edges if "#c62828" in attrs] == [
        ("corp-b", "cde-c")
    ]
    assert text.count("{") == text.count("}")


def test_quotes_in_names_are_escaped() -> None:
    assert dot._q('a"b\\c') == '"a\\"b\\\\c"'
