"""The report as one self-contained HTML page for the assessor and the engineer.

Everything is inline (CSS and SVG, no script, no fetch), so the file works
offline and stays the same when archived.  Sections follow what PCI DSS
11.4.5 evidence must show: who, when, how, what scope, each pair's verdict
with its findings, what was not tested, and transitive paths.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from html import escape
from typing import Any

from coordinator import svg
from coordinator.report import segments_of
from coordinator.verdict import Verdict
from protocol.ports import format_ports

REACHABLE = ("open", "closed", "arrived")
MAX_CHAINS = 20  # transitive paths drawn; all are listed

CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1f2933;margin:0 auto;max-width:1500px;
padding:24px}
h1{margin:0 0 4px}h2{border-bottom:2px solid #e4e7eb;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse}td,th{padding:3px 8px;border:1px solid #d9e2ec;
text-align:left;vertical-align:top}th{background:#f5f7fa}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:700;
text-transform:uppercase}
.v-pass{background:#e3f4e8;color:#1e6b31}.v-fail{background:#c62828;color:#fff}
.v-allowed{background:#e6f0fb;color:#1d4f91}.v-inconclusive{background:#fff1c2;
color:#7a5200}.v-pending{background:#eceff1;color:#52606d}.v-none{background:#fafafa;
color:#bcccdc}
table.matrix td{text-align:center;min-width:56px;font-weight:600;font-size:12px}
table.matrix a{color:inherit;text-decoration:none}
table.matrix th.src{text-align:right}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:4px 16px}
dl.summary dt{font-weight:600;color:#52606d}dl.summary dd{margin:0}
details{margin:4px 0;border:1px solid #e4e7eb;border-radius:6px;padding:4px 8px}
summary{cursor:pointer}code{font-size:12px}.muted{color:#7b8794}
.graph{max-width:100%;height:auto}tr.reach td{font-weight:700;color:#8e1c1c}
"""


def render(report: dict[str, Any]) -> str:
    """The whole page."""
    title = f"segscan report {report['run']}"
    body = [
        _header(report),
        _summary(report),
        _scope(report),
        _matrix_section(report),
        _graph_section(report),
        _transitive(report),
        _pairs(report),
        _limitations(report),
        _footer(report),
    ]

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def badge(verdict: str) -> str:
    return f'<span class="badge v-{escape(verdict)}">{escape(verdict)}</span>'


def _header(report: dict[str, Any]) -> str:
    return (
        "<header><h1>Network segmentation test</h1>"
        f"<p>Run <code>{escape(report['run'])}</code> — overall verdict "
        f'<span id="verdict">{badge(report["verdict"])}</span></p></header>'
    )


def _summary(report: dict[str, Any]) -> str:
    people = report.get("assessment", {})
    method = report.get("method", {})
    tool = report.get("tool", {})
    counts = Counter(p["verdict"] for p in report["pairs"])
    rows = [
        ("Verdict", badge(report["verdict"])),
        ("Tester", _text(people.get("tester"))),
        ("Organisation", _text(people.get("organisation"))),
        ("Started", _text(report["started_at"])),
        ("Finished", _text(report["finished_at"])),
        ("Scan window", _window(method)),
        ("Run", f"{escape(report['run'])} ({escape(report.get('kind', 'full'))})"),
        ("Base run", _text(report.get("base_run"))),
        ("Tool", _text(f"{tool.get('name', 'segscan')} {tool.get('version', '?')}")),
        ("Policy", _text(report.get("policy", {}).get("source"))),
        (
            "Policy SHA-256",
            f"<code>{_text(report.get('policy', {}).get('sha256'))}</code>",
        ),
        ("Requirements", _text(", ".join(method.get("requirements", [])))),
        ("Method", _text(method.get("summary"))),
        ("Engines", _text(", ".join(method.get("engines", [])))),
        ("TCP ports", f"<code>{_text(method.get('tcp'))}</code>"),
        ("UDP ports", f"<code>{_text(method.get('udp'))}</code>"),
        ("Passes, rate", _text(_rate(method))),
        ("Pairs", " ".join(f"{badge(v)} {n}" for v, n in sorted(counts.items()))),
    ]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)

    return section("summary", "Summary", f'<dl class="summary">{items}</dl>')


def _rate(method: dict[str, Any]) -> str | None:
    if "passes" not in method:
        return None

    return f"{method['passes']} passes, at most {method['rate_pps']} probes/s per agent"


def _window(method: dict[str, Any]) -> str:
    first, last = method.get("scan_started_at"), method.get("scan_finished_at")
    if first is None or last is None:
        return _text(None)

    return escape(f"{_iso(first)} to {_iso(last)}")


def _scope(report: dict[str, Any]) -> str:
    scope = report.get("scope")
    if not scope:
        return section("scope", "Scope", '<p class="muted">not recorded</p>')
    segs = "".join(
        f"<tr><td>{escape(seg['name'])}</td><td>"
        + ", ".join(
            f"{escape(s['name'])} <code>{escape(s['cidr'])}</code>"
            for s in seg["subnets"]
        )
        + "</td></tr>"
        for seg in scope["segments"]
    )
    controls = "".join(
        f"<tr><td>{escape(c['from'])} → {escape(c['to'])}</td>"
        f"<td>{escape(c['expect'])}</td><td>{escape(c.get('tcp', ''))}</td>"
        f"<td>{escape(c.get('udp', ''))}</td><td>{c['pairs']}</td></tr>"
        for c in scope["controls"]
    )

    return (
        '<section id="scope"><h2>Scope</h2><h3>Segments and subnets</h3>'
        f"<table><tr><th>Segment</th><th>Subnets</th></tr>{segs}</table>"
        "<h3>Controls tested</h3><table><tr><th>From → to</th><th>Expect</th>"
        "<th>Allowed TCP</th><th>Allowed UDP</th><th>Directed pairs</th></tr>"
        f"{controls}</table></section>"
    )


def matrix(report: dict[str, Any]) -> str:
    """Sources down, destinations across; each cell coloured by its verdict and
    counting the reachable ports."""
    pairs = {(p["src"], p["dst"]): p for p in report["pairs"]}
    order = [s for subnets in segments_of(report).values() for s in subnets]
    srcs = [s for s in order if any(k[0] == s for k in pairs)]
    dsts = [d for d in order if any(k[1] == d for k in pairs)]
    head = "".join(f'<th scope="col">{escape(d)}</th>' for d in dsts)
    rows = []
    for src in srcs:
        cells = "".join(_cell(pairs.get((src, dst)), src, dst) for dst in dsts)
        rows.append(f'<tr><th class="src" scope="row">{escape(src)}</th>{cells}</tr>')
    legend = " ".join(badge(str(v)) for v in Verdict)

    return (
        '<table class="matrix"><tr><th>source ↓ / destination →</th>'
        f"{head}</tr>{''.join(rows)}</table>"
        f'<p class="muted">{legend}; the number counts reachable ports.</p>'
    )


def _cell(pair: dict[str, Any] | None, src: str, dst: str) -> str:
    if pair is None:
        return '<td class="v-none" title="not tested">-</td>'
    reachable = sum(
        b - a + 1
        for f in pair["findings"]
        if f["state"] in REACHABLE
        for a, b in f["ports"]
    )
    text = f"{pair['verdict']} {reachable}" if reachable else pair["verdict"]

    return (
        f'<td class="v-{escape(pair["verdict"])}" data-src="{escape(src)}" '
        f'data-dst="{escape(dst)}" title="{escape(src)} → {escape(dst)}: '
        f'{escape(pair["verdict"])}, {escape(pair.get("reason", ""))}">'
        f'<a href="#pair-{escape(src)}--{escape(dst)}">{escape(text)}</a></td>'
    )


def _matrix_section(report: dict[str, Any]) -> str:
    return f'<section id="matrix"><h2>Matrix</h2>{matrix(report)}</section>'


def _graph_section(report: dict[str, Any]) -> str:
    return (
        '<section id="graph"><h2>Reachability graph</h2>'
        '<p class="muted">An arrow for every pair on which a probe crossed '
        "the boundary.</p>"
        f"{svg.render(report)}</section>"
    )


def _transitive(report: dict[str, Any]) -> str:
    found = report.get("transitive_paths", {"paths": [], "truncated": False})
    paths = found["paths"]
    intro = (
        "<p>Paths of two or more reachable pairs that lead from a subnet to one the "
        "policy keeps it away from (PCI DSS scoping: what can reach the CDE through "
        "another system is in scope).</p>"
    )
    if not paths:
        listing = '<p id="no-transitive">None found among the pairs tested.</p>'
    else:
        items = "".join(
            f"<li>{' → '.join(escape(s) for s in p['path'])} "
            f"(direct pair: {badge(p['direct_verdict'])})</li>"
            for p in paths
        )
        drawn = "".join(svg.chain(p["path"]) for p in paths[:MAX_CHAINS])
        cut = "<p>The list was cut short.</p>" if found["truncated"] else ""
        listing = f"<ol>{items}</ol>{cut}<div>{drawn}</div>"

    return (
        f'<section id="transitive"><h2>Transitive paths</h2>{intro}{listing}</section>'
    )


def _pairs(report: dict[str, Any]) -> str:
    attention = [p for p in report["pairs"] if p["verdict"] in ("fail", "inconclusive")]
    links = ", ".join(
        f'<a href="#pair-{escape(p["src"])}--{escape(p["dst"])}">'
        f"{escape(p['src'])} → {escape(p['dst'])}</a>"
        for p in attention
    )
    head = f"<p>Needing attention: {links}</p>" if attention else ""

    return (
        f'<section id="pairs"><h2>Pairs</h2>{head}'
        + "".join(_pair(p) for p in report["pairs"])
        + "</section>"
    )


def _pair(pair: dict[str, Any]) -> str:
    cov = pair["coverage"]
    witness = pair.get("witness", {}).get("summary", "not recorded")
    is_open = " open" if pair["verdict"] in ("fail", "inconclusive") else ""
    findings = "".join(_finding(f) for f in pair["findings"])

    return (
        f'<details id="pair-{escape(pair["src"])}--{escape(pair["dst"])}"{is_open}>'
        f"<summary>{badge(pair['verdict'])} <b>{escape(pair['src'])} → "
        f"{escape(pair['dst'])}</b> expect {escape(pair['expect'])}: "
        f"{escape(pair.get('reason', ''))}</summary>"
        f"<p>Coverage: {cov['planned']} planned, {cov['sent']} sent, "
        f"{cov['answered']} answered, {cov.get('passes', '?')} passes, "
        f"{cov.get('chunks_done', '?')}/{cov.get('chunks', '?')} chunks. "
        f"Witness: {escape(witness)}.</p>"
        "<table><tr><th>Address</th><th>Proto</th><th>Ports</th><th>State</th>"
        "<th>Reason</th><th>TTL</th><th>Time</th><th>Agent</th></tr>"
        f"{findings}</table></details>"
    )


def _finding(f: dict[str, Any]) -> str:
    ports = format_ports(tuple((a, b) for a, b in f["ports"]))
    strong = ' class="reach"' if f["state"] in REACHABLE else ""
    cells = (
        f["ip"],
        f["proto"],
        ports,
        f["state"],
        f["reason"],
        "" if f.get("ttl") is None else str(f["ttl"]),
        f.get("seen_at", ""),
        f.get("agent", ""),
    )

    return f"<tr{strong}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _limitations(report: dict[str, Any]) -> str:
    notes = report.get("limitations") or ["not recorded"]
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)

    return (
        '<section id="limitations"><h2>Limitations: what was not tested</h2>'
        f"<ul>{items}</ul></section>"
    )


def _footer(report: dict[str, Any]) -> str:
    tool = report.get("tool", {})

    return (
        f'<footer class="muted"><p>Rendered by {escape(tool.get("name", "segscan"))} '
        f"{escape(tool.get('version', ''))} from the run's JSON report.</p></footer>"
    )


def _text(value: object) -> str:
    return (
        '<span class="muted">not recorded</span>'
        if value in (None, "")
        else escape(str(value))
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
