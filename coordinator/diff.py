"""Drift between two runs: reachability edges and reachable findings that appeared
or vanished, and pairs whose verdict changed.

PCI DSS 11.4.5 asks for a test after every change to segmentation controls;
comparing the run after a change with the one before shows what the change
opened.  Only reachable findings (open, closed, arrived) are compared: a
port that went from filtered to prohibited is no drift in reachability.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from protocol.ports import PortRanges, format_ports, merge, subtract

REACHABLE = frozenset({"open", "closed", "arrived"})

# (src, dst, ip, proto, state) -> ports
FindingKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Change:
    """Ports of one address, seen in one run and not the other."""

    src: str
    dst: str
    ip: str
    proto: str
    state: str
    ports: PortRanges

    def as_dict(self) -> dict[str, Any]:
        return {
            "src": self.src,
            "dst": self.dst,
            "ip": self.ip,
            "proto": self.proto,
            "state": self.state,
            "ports": [list(r) for r in self.ports],
        }


@dataclass(frozen=True)
class Drift:
    base: str
    head: str
    edges_appeared: tuple[tuple[str, str], ...]
    edges_vanished: tuple[tuple[str, str], ...]
    findings_appeared: tuple[Change, ...]
    findings_vanished: tuple[Change, ...]
    verdicts_changed: tuple[tuple[str, str, str, str], ...]  # src, dst, was, is

    @property
    def new_reachability(self) -> bool:
        """Whether anything became reachable that was not before."""
        return bool(self.edges_appeared or self.findings_appeared)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "new_reachability": self.new_reachability,
            "edges_appeared": [list(e) for e in self.edges_appeared],
            "edges_vanished": [list(e) for e in self.edges_vanished],
            "findings_appeared": [c.as_dict() for c in self.findings_appeared],
            "findings_vanished": [c.as_dict() for c in self.findings_vanished],
            "verdicts_changed": [
                {"src": s, "dst": d, "was": a, "is": b}
                for s, d, a, b in self.verdicts_changed
            ],
        }


def compare(base: dict[str, Any], head: dict[str, Any]) -> Drift:
    """What changed from report ``base`` to report ``head``."""
    edges_a, edges_b = _edges(base), _edges(head)
    found_a, found_b = _findings(base), _findings(head)
    verdicts_a = {(p["src"], p["dst"]): p["verdict"] for p in base["pairs"]}
    changed = tuple(
        (p["src"], p["dst"], verdicts_a[(p["src"], p["dst"])], p["verdict"])
        for p in head["pairs"]
        if verdicts_a.get((p["src"], p["dst"]), p["verdict"]) != p["verdict"]
    )

    return Drift(
        base["run"],
        head["run"],
        tuple(sorted(edges_b - edges_a)),
        tuple(sorted(edges_a - edges_b)),
        _minus(found_b, found_a),
        _minus(found_a, found_b),
        changed,
    )


def _edges(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["src"], e["dst"]) for e in report.get("graph", {}).get("edges", [])}


def _findings(report: dict[str, Any]) -> dict[FindingKey, PortRanges]:
    ports: dict[FindingKey, list[tuple[int, int]]] = defaultdict(list)
    for pair in report["pairs"]:
        for f in pair["findings"]:
            if f["state"] in REACHABLE:
                key = (pair["src"], pair["dst"], f["ip"], f["proto"], f["state"])
                ports[key] += [(a, b) for a, b in f["ports"]]

    return {key: merge(ranges) for key, ranges in ports.items()}


def _minus(
    a: dict[FindingKey, PortRanges], b: dict[FindingKey, PortRanges]
) -> tuple[Change, ...]:
    out = []
    for key in sorted(a):
        extra = subtract(a[key], b.get(key, ()))
        if extra:
            out.append(Change(*key, extra))

    return tuple(out)


def render_text(drift: Drift) -> str:
    """A readable account, new reachability first."""
    lines = [f"drift {drift.base} -> {drift.head}"]
    lines += [f"  + edge {s} -> {d}" for s, d in drift.edges_appeared]
    lines += [f"  + {_change(c)}" for c in drift.findings_appeared]
    lines += [f"  - edge {s} -> {d}" for s, d in drift.edges_vanished]
    lines += [f"  - {_change(c)}" for c in drift.findings_vanished]
    lines += [f"  ~ {s} -> {d}: {a} -> {b}" for s, d, a, b in drift.verdicts_changed]
    if len(lines) == 1:
        lines.append("  no change in reachability or verdicts")

    return "\n".join(lines)


def _change(c: Change) -> str:
    return f"{c.src} -> {c.dst}: {c.ip} {c.proto} {format_ports(c.ports)} {c.state}"
