"""The reachability graph as Graphviz DOT: segments as clusters, subnets as nodes,
an edge per reachable pair, violations in red."""

from __future__ import annotations

from typing import Any

from coordinator.report import segments_of


def render(report: dict[str, Any]) -> str:
    """A ``digraph`` that ``dot -Tsvg`` draws."""
    lines = [
        f"digraph {_q('segscan ' + report['run'])} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f6f8"];',
    ]
    for index, (segment, subnets) in enumerate(segments_of(report).items()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_q(segment)};")
        lines.extend(f"    {_q(s)};" for s in subnets)
        lines.append("  }")
    for edge in report.get("graph", {}).get("edges", []):
        bad = edge["violation"]
        style = 'color="#c62828", penwidth=3' if bad else 'color="#7b8794"'
        label = f"{edge['reachable_ports']} ports"
        lines.append(
            f"  {_q(edge['src'])} -> {_q(edge['dst'])} [{style}, label={_q(label)}];"
        )
    lines.append("}")

    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A DOT quoted ID: only the double quote needs escaping (and backslash)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
