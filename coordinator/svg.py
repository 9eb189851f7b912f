"""The reachability graph drawn as inline SVG: segments as columns, subnets as
nodes, an arrow per reachable pair, violations in thick red with their ports.

Layout is fixed, not force-directed, so that two runs of the same policy draw
the same picture and a change stands out.  Edges leave a node a little above
its middle and arrive a little below it, so ``a -> b`` and ``b -> a`` never
overlap.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from html import escape
from typing import Any

from coordinator.report import segments_of
from protocol.ports import format_ports

COL_GAP = 440
ROW_GAP = 52
NODE_W = 120
NODE_H = 30
TOP = 64
MARGIN = 40
SKEW = 6  # how far above/below the middle edges leave and arrive
LOOP = 70  # how far an edge within one segment bulges out

STYLE = """
.seg rect{fill:#f5f7fa;stroke:#c9d2dc;rx:12}
.seg text{font:600 14px sans-serif;fill:#3e4c59}
.node rect{fill:#fff;stroke:#52606d;stroke-width:1.5;rx:8}
.node.hit rect{stroke:#c62828;stroke-width:3;fill:#fdecea}
.node text{font:13px monospace;fill:#1f2933;text-anchor:middle}
.edge path{fill:none;stroke:#7b8794;stroke-width:1.2;opacity:.55}
.edge.transitive path{stroke:#e67e22;stroke-width:2.5;stroke-dasharray:6 4;opacity:1}
.edge.violation path{stroke:#c62828;stroke-width:4;opacity:1}
.edge text{font:bold 12px sans-serif;fill:#c62828;paint-order:stroke;
stroke:#fff;stroke-width:4px}
.legend text{font:12px sans-serif;fill:#3e4c59}
"""


def render(report: dict[str, Any]) -> str:
    """The run's graph as one ``<svg>`` element."""
    segments = segments_of(report)
    places = _places(segments)
    rows = max((len(s) for s in segments.values()), default=1)
    width = 2 * MARGIN + max(1, len(segments)) * COL_GAP - (COL_GAP - NODE_W - 80)
    height = TOP + rows * ROW_GAP + 100
    hits = {e["dst"] for e in _edges(report) if e["violation"]}
    on_paths = _transitive_edges(report)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="reachability graph of run {escape(report["run"])}">',
        f"<style>{STYLE}</style>",
        _markers(),
    ]
    parts += _segment_boxes(segments, places)
    ordered = sorted(_edges(report), key=lambda e: e["violation"])  # red on top
    parts += [_edge(e, places, segments, report, on_paths) for e in ordered]
    parts += [_node(name, xy, name in hits) for name, xy in places.items()]
    parts.append(_legend(height - 62))
    parts.append("</svg>")

    return "\n".join(parts)


def _edges(report: dict[str, Any]) -> list[dict[str, Any]]:
    return list(report.get("graph", {}).get("edges", []))


def _transitive_edges(report: dict[str, Any]) -> set[tuple[str, str]]:
    paths = report.get("transitive_paths", {}).get("paths", [])

    return {(a, b) for p in paths for a, b in itertools.pairwise(p["path"])}


def _places(segments: dict[str, list[str]]) -> dict[str, tuple[float, float]]:
    rows = max((len(s) for s in segments.values()), default=1)
    places = {}
    for col, subnets in enumerate(segments.values()):
        x = MARGIN + 40 + NODE_W / 2 + col * COL_GAP
        offset = (rows - len(subnets)) * ROW_GAP / 2  # centre short columns
        for row, name in enumerate(subnets):
            places[name] = (x, TOP + offset + row * ROW_GAP + NODE_H / 2 + 8)

    return places


def _segment_boxes(
    segments: dict[str, list[str]], places: dict[str, tuple[float, float]]
) -> list[str]:
    out = []
    for name, subnets in segments.items():
        if not subnets:
            continue
        xs = [places[s][0] for s in subnets]
        ys = [places[s][1] for s in subnets]
        left, top = min(xs) - NODE_W / 2 - 30, min(ys) - NODE_H / 2 - 34
        w, h = NODE_W + 60, max(ys) - min(ys) + NODE_H + 50
        out.append(
            f'<g class="seg" data-segment="{escape(name)}">'
            f'<rect x="{left:.0f}" y="{top:.0f}" width="{w:.0f}" height="{h:.0f}"/>'
            f'<text x="{left + 12:.0f}" y="{top + 20:.0f}">{escape(name)}</text></g>'
        )

    return out


def _node(name: str, xy: tuple[float, float], hit: bool) -> str:
    x, y = xy
    cls = "node hit" if hit else "node"

    return (
        f'<g class="{cls}" data-subnet="{escape(name)}">'
        f'<rect x="{x - NODE_W / 2:.0f}" y="{y - NODE_H / 2:.0f}" '
        f'width="{NODE_W}" height="{NODE_H}"/>'
        f'<text x="{x:.0f}" y="{y + 4:.0f}">{escape(name)}</text></g>'
    )


def _edge(
    edge: dict[str, Any],
    places: dict[str, tuple[float, float]],
    segments: dict[str, list[str]],
    report: dict[str, Any],
    on_paths: set[tuple[str, str]],
) -> str:
    src, dst = edge["src"], edge["dst"]
    if src not in places or dst not in places:
        return ""
    d, mid = _curve(places[src], places[dst], _column_of(src, segments) == 0)
    cls = "edge violation" if edge["violation"] else "edge"
    if (src, dst) in on_paths:
        cls += " transitive"
    ports = _violating_ports(report, src, dst) if edge["violation"] else ""
    title = f"{src} -> {dst}: {edge['reachable_ports']} reachable ports {ports}"
    marker = "bad" if edge["violation"] else "ok"
    label = (
        f'<text x="{mid[0]:.0f}" y="{mid[1] - 6:.0f}" text-anchor="middle">'
        f"{escape(ports)}</text>"
        if ports
        else ""
    )

    return (
        f'<g class="{cls}" data-src="{escape(src)}" data-dst="{escape(dst)}">'
        f"<title>{escape(title.strip())}</title>"
        f'<path d="{d}" marker-end="url(#arrow-{marker})"/>{label}</g>'
    )


def _curve(
    a: tuple[float, float], b: tuple[float, float], first_column: bool
) -> tuple[str, tuple[float, float]]:
    """A cubic Bézier from ``a`` to ``b`` and its midpoint."""
    (ax, ay), (bx, by) = a, b
    ay, by = ay - SKEW, by + SKEW
    if ax == bx:  # same column: leave and return on the outer side
        side = -1 if first_column else 1
        x0 = x3 = ax + side * NODE_W / 2
        c1, c2 = (x0 + side * LOOP, ay), (x3 + side * LOOP, by)
    else:
        side = 1 if bx > ax else -1
        x0, x3 = ax + side * NODE_W / 2, bx - side * (NODE_W / 2 + 4)
        c1, c2 = ((x0 + x3) / 2, ay), ((x0 + x3) / 2, by)
    mid = ((x0 + 3 * c1[0] + 3 * c2[0] + x3) / 8, (ay + 3 * ay + 3 * by + by) / 8)
    d = (
        f"M{x0:.1f},{ay:.1f} C{c1[0]:.1f},{c1[1]:.1f} "
        f"{c2[0]:.1f},{c2[1]:.1f} {x3:.1f},{by:.1f}"
    )

    return d, mid


def _column_of(name: str, segments: dict[str, list[str]]) -> int:
    return next((i for i, s in enumerate(segments.values()) if name in s), 0)


def _violating_ports(report: dict[str, Any], src: str, dst: str) -> str:
    pair = next(
        (p for p in report["pairs"] if (p["src"], p["dst"]) == (src, dst)), None
    )
    if pair is None:
        return ""
    labels = [
        f"{f['proto']}/{format_ports(tuple((a, b) for a, b in f['ports']))}"
        for f in pair["findings"]
        if f["state"] in ("open", "closed", "arrived")
    ]

    return ", ".join(_first(labels, 3))


def _first(items: list[str], most: int) -> Iterable[str]:
    yield from items[:most]
    if len(items) > most:
        yield f"+{len(items) - most}"


def _markers() -> str:
    def marker(name: str, colour: str, size: int) -> str:
        return (
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerWidth="{size}" markerHeight="{size}" orient="auto-start-reverse" '
            f'markerUnits="userSpaceOnUse"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{colour}"/></marker>'
        )

    return f"<defs>{marker('ok', '#9aa5b1', 8)}{marker('bad', '#c62828', 14)}</defs>"


def _legend(y: float) -> str:
    items = [
        ("#c62828", "4", "", "violation: reachable where the policy says closed"),
        ("#7b8794", "1.5", "", "reachable, allowed"),
        ("#e67e22", "2.5", "6 4", "on a transitive path"),
    ]
    out = ['<g class="legend">']
    for i, (colour, width, dash, text) in enumerate(items):
        x, row = MARGIN, y + i * 20
        out.append(
            f'<line x1="{x}" y1="{row}" x2="{x + 30}" y2="{row}" stroke="{colour}" '
            f'stroke-width="{width}" stroke-dasharray="{dash or "none"}"/>'
            f'<text x="{x + 38}" y="{row + 4}">{escape(text)}</text>'
        )
    out.append("</g>")

    return "".join(out)


def chain(path: list[str]) -> str:
    """One transitive path drawn as a row of nodes joined by arrows."""
    gap = NODE_W + 50
    width, height = MARGIN * 2 + len(path) * gap - 50, NODE_H + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chain" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<style>{STYLE}</style>",
        _markers(),
    ]
    y = height / 2
    for i, name in enumerate(path):
        x = MARGIN + NODE_W / 2 + i * gap
        if i:
            parts.append(
                f'<g class="edge transitive"><path d="M{x - gap + NODE_W / 2:.0f},{y} '
                f'L{x - NODE_W / 2 - 4:.0f},{y}" marker-end="url(#arrow-ok)"/></g>'
            )
        parts.append(_node(name, (x, y), i == len(path) - 1))
    parts.append("</svg>")

    return "\n".join(parts)
