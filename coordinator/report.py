"""The run report: a JSON document other tools read, and a text rendering.

The JSON shape is a contract, described by ``schema/report.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from coordinator import assessment, transitive
from coordinator.errors import PolicyError
from coordinator.graph import edges
from coordinator.policy import parse_policy
from coordinator.store import RunRecord
from coordinator.verdict import PairJudgement, Verdict
from protocol.messages import Finding, Result
from protocol.ports import format_ports

# Who saw a finding and when: (src, dst, finding) -> (agent, finished_at).
Provenance = dict[tuple[str, str, Finding], tuple[str, float]]

MATRIX_MARKS = {
    Verdict.PASS: ".",
    Verdict.FAIL: "X",
    Verdict.ALLOWED: "o",
    Verdict.INCONCLUSIVE: "?",
    Verdict.PENDING: "~",
}


def build(
    run: RunRecord,
    judgements: Sequence[PairJudgement],
    verdict: Verdict,
    results: Sequence[Result] = (),
) -> dict[str, Any]:
    """The report of ``run`` as plain JSON-ready data; ``results`` add who saw
    each finding and when, and the engines used."""
    seen: Provenance = {
        (r.src, r.dst, f): (r.agent, r.finished_at) for r in results for f in r.findings
    }
    graph_edges = edges(judgements)
    body = {
        "run": run.id,
        "kind": run.kind,
        "base_run": run.base_run,
        "verdict": str(verdict),
        "started_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at) if run.finished_at else None,
        "tool": assessment.tool(),
        "policy": {"source": run.policy_source, "sha256": run.policy_sha256},
        "pairs": [_pair(j, seen) for j in judgements],
        "graph": {
            "edges": [
                {
                    "src": e.src,
                    "dst": e.dst,
                    "reachable_ports": e.ports,
                    "violation": e.violation,
                }
                for e in graph_edges
            ]
        },
        "transitive_paths": _transitive(
            judgements, [(e.src, e.dst) for e in graph_edges]
        ),
    }

    return body | _assessment(run, judgements, results)


def _assessment(
    run: RunRecord, judgements: Sequence[PairJudgement], results: Sequence[Result]
) -> dict[str, Any]:
    try:
        policy = parse_policy(run.policy_text, run.policy_source)
    except PolicyError:  # a policy stored by an older version: report without
        return {}

    return {
        "assessment": assessment.people(policy),
        "method": assessment.method(policy, results),
        "scope": assessment.scope(policy),
        "limitations": assessment.limitations(policy, judgements, results),
    }


def _transitive(
    judgements: Sequence[PairJudgement], graph_edges: list[tuple[str, str]]
) -> dict[str, Any]:
    closed = {
        (j.src, j.dst): str(j.verdict) for j in judgements if j.expect == "closed"
    }
    paths, cut = transitive.find(graph_edges, closed)

    return {
        "paths": [
            {"path": list(p.path), "direct_verdict": p.direct_verdict} for p in paths
        ],
        "truncated": cut,
    }


def _pair(j: PairJudgement, seen: Provenance) -> dict[str, Any]:
    return {
        "src": j.src,
        "dst": j.dst,
        "expect": j.expect,
        "verdict": str(j.verdict),
        "reason": j.reason,
        "coverage": {
            "planned": j.coverage.planned,
            "sent": j.coverage.sent,
            "answered": j.coverage.answered,
            "passes": j.coverage.passes,
            "chunks": j.chunks,
            "chunks_done": j.chunks_done,
        },
        "witness": assessment.witness(j),
        "findings": [_finding(f, seen.get((j.src, j.dst, f))) for f in j.findings],
    }


def _finding(f: Finding, seen: tuple[str, float] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ip": f.ip,
        "proto": str(f.proto),
        "ports": [list(r) for r in f.ports],
        "state": str(f.state),
        "reason": str(f.reason),
        "ttl": f.ttl,
    }
    if seen is not None:
        body["agent"], body["seen_at"] = seen[0], _iso(seen[1])

    return body


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def schema() -> dict[str, Any]:
    """The JSON Schema of the report."""
    text = resources.files("coordinator").joinpath("schema/report.schema.json")

    return json.loads(text.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def segments_of(report: dict[str, Any]) -> dict[str, list[str]]:
    """Segment name -> its subnets, from the report's scope (or its pairs)."""
    scope = report.get("scope")
    if scope:
        return {
            seg["name"]: [s["name"] for s in seg["subnets"]]
            for seg in scope["segments"]
        }
    names = {p["src"] for p in report["pairs"]} | {p["dst"] for p in report["pairs"]}

    return {"subnets": sorted(names)}


def render_matrix(report: dict[str, Any]) -> str:
    """Source subnets down, destination subnets across, one mark per pair."""
    cells = {(p["src"], p["dst"]): p["verdict"] for p in report["pairs"]}
    srcs = sorted({p["src"] for p in report["pairs"]})
    dsts = sorted({p["dst"] for p in report["pairs"]})
    width = max(len(s) for s in srcs)
    col = max(3, *(len(d) for d in dsts))
    lines = [" " * width + " " + " ".join(d.rjust(col) for d in dsts)]
    for src in srcs:
        marks = [
            MATRIX_MARKS[Verdict(cells[(src, d)])] if (src, d) in cells else " "
            for d in dsts
        ]
        lines.append(src.ljust(width) + " " + " ".join(m.rjust(col) for m in marks))
    legend = ", ".join(f"{m} {v}" for v, m in MATRIX_MARKS.items())
    lines.append(f"({legend}; rows are sources, columns destinations)")

    return "\n".join(lines)


def render_text(report: dict[str, Any]) -> str:
    """A readable report: matrix, then the pairs that need a look."""
    lines = [
        f"run {report['run']} ({report['kind']})  verdict: {report['verdict'].upper()}",
        f"policy {report['policy']['source']} sha256 {report['policy']['sha256'][:16]}",
        f"started {report['started_at']}  finished {report['finished_at'] or '-'}",
        *_assessment_lines(report),
        "",
        render_matrix(report),
        "",
    ]
    counts: dict[str, int] = {}
    for pair in report["pairs"]:
        counts[pair["verdict"]] = counts.get(pair["verdict"], 0) + 1
    lines.append("pairs: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    for pair in report["pairs"]:
        if pair["verdict"] in ("fail", "inconclusive"):
            lines.append(
                f"  {pair['verdict'].upper():12} {pair['src']} -> {pair['dst']}: "
                f"{pair['reason']}"
            )
            lines.extend(_finding_lines(pair))
    for refusal in report.get("refusals", []):
        lines.append(
            f"  REFUSED      by {refusal['subnet']}: {refusal['reason']}: "
            f"{refusal['detail']}"
        )

    return "\n".join(lines)


def _assessment_lines(report: dict[str, Any]) -> list[str]:
    people = report.get("assessment") or {}
    tool = report.get("tool") or {}
    lines = [
        f"tester {people.get('tester') or '-'} ({people.get('organisation') or '-'})"
        f"  tool {tool.get('name', 'segscan')} {tool.get('version', '?')}"
    ]
    paths = (report.get("transitive_paths") or {}).get("paths", [])
    if paths:
        lines.append(
            f"{len(paths)} transitive paths, e.g. {' -> '.join(paths[0]['path'])}"
        )

    return lines


def _finding_lines(pair: dict[str, Any]) -> list[str]:
    return [
        f"      {f['ip']:15} {f['proto']} {format_ports(tuple(map(tuple, f['ports'])))}"
        f" {f['state']} ({f['reason']})"
        for f in pair["findings"]
        if f["state"] in ("open", "closed", "arrived")
    ]
