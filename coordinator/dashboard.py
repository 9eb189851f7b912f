"""The dashboard ``coordinator serve`` shows: the runs, a live view of each, its
matrix and graph, its full report and its evidence bundle.

Pages are rendered here with inline CSS and SVG and one small inline script
that polls the live figures; nothing comes from elsewhere, so the dashboard
works on an isolated network.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web

from coordinator import html, live, svg
from coordinator.errors import CoordinatorError, NotFoundError
from coordinator.runs import RunManager

RUNS = web.AppKey("dashboard_runs", RunManager)
POLL_MS = 2000

SCRIPT = """
const live = document.getElementById('live');
async function poll() {
  try {
    const reply = await fetch(live.dataset.url);
    if (!reply.ok) return;
    const data = await reply.json();
    for (const key of ['pairs_done', 'pairs', 'chunks_done', 'chunks',
                       'rate_pps', 'elapsed_s']) {
      const el = document.getElementById('live-' + key);
      if (el) el.textContent = data[key];
    }
    const silent = document.getElementById('live-silent_agents');
    silent.textContent = data.silent_agents.join(', ') || 'none';
    if (data.finished && live.dataset.finished === 'false') location.reload();
  } catch (e) { /* the coordinator may restart; try again */ }
}
if (live.dataset.finished === 'false') setInterval(poll, POLL_MS);
""".replace("POLL_MS", str(POLL_MS))

CSS = (
    html.CSS
    + """
nav{margin-bottom:16px}nav a{margin-right:16px}
.figures{display:flex;gap:24px;flex-wrap:wrap}
.figure{border:1px solid #d9e2ec;border-radius:8px;padding:8px 16px;min-width:120px}
.figure b{display:block;font-size:22px}
"""
)


def add_routes(app: web.Application, manager: RunManager) -> None:
    """The dashboard's pages and the JSON and evidence endpoints it relies on."""
    app[RUNS] = manager
    app.router.add_get("/", runs_page)
    app.router.add_get("/runs/{run}", run_page)
    app.router.add_get("/runs/{run}/report.html", report_page)
    app.router.add_get("/v1/runs/{run}/live", live_json)
    app.router.add_get("/v1/runs/{run}/evidence", evidence_tar)


def _page(title: str, body: str) -> web.Response:
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        '<nav><a href="/">runs</a><a href="/runs/latest">latest run</a></nav>'
        f"{body}</body></html>\n"
    )

    return web.Response(text=text, content_type="text/html")


async def runs_page(request: web.Request) -> web.Response:
    manager = request.app[RUNS]
    now = time.time()
    rows = "".join(
        f'<tr><td><a href="/runs/{escape(r.id)}">{escape(r.id)}</a></td>'
        f"<td>{escape(r.kind)}</td><td>{_when(r.created_at)}</td>"
        f"<td>{_when(r.finished_at) if r.finished_at else 'running'}</td>"
        f"<td>{html.badge(r.verdict or 'pending')}</td></tr>"
        for r in await manager.store.runs()
    )
    agents = "".join(
        f"<tr><td>{escape(a.subnet)}</td><td>{escape(a.id)}</td>"
        f"<td>{now - a.last_seen:.0f}s ago</td></tr>"
        for a in sorted(await manager.store.agents(), key=lambda a: a.subnet)
    )
    body = (
        '<h1>segscan runs</h1><table id="runs"><tr><th>Run</th><th>Kind</th>'
        "<th>Started</th><th>Finished</th><th>Verdict</th></tr>"
        f'{rows}</table><h2>Agents</h2><table id="agents"><tr><th>Subnet</th>'
        f"<th>Agent</th><th>Last heartbeat</th></tr>{agents}</table>"
    )

    return _page("segscan runs", body)


async def run_page(request: web.Request) -> web.Response:
    manager = request.app[RUNS]
    try:
        run = await manager.find(request.match_info["run"])
        report = await manager.report(run.id)
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    figures = await live.snapshot(manager.store, run)
    body = (
        f"<h1>Run {escape(run.id)} {html.badge(report['verdict'])}</h1>"
        f'<p><a href="/runs/{escape(run.id)}/report.html">full report</a> · '
        f'<a href="/v1/runs/{escape(run.id)}/evidence">evidence bundle</a></p>'
        + _figures(figures, f"/v1/runs/{run.id}/live")
        + html.section("matrix", "Matrix", html.matrix(report))
        + html.section("graph", "Reachability graph", svg.render(report))
        + f"<script>{SCRIPT}</script>"
    )

    return _page(f"segscan run {run.id}", body)


def _figures(figures: dict[str, Any], url: str) -> str:
    def figure(key: str, label: str, extra: str = "") -> str:
        value = escape(str(figures[key]))
        return (
            f'<div class="figure">{label}<b><span id="live-{key}">{value}</span>'
            f"{extra}</b></div>"
        )

    silent = ", ".join(figures["silent_agents"]) or "none"
    state = "true" if figures["finished"] else "false"

    return (
        f'<div id="live" class="figures" data-url="{escape(url)}" '
        f'data-finished="{state}">'
        + figure(
            "pairs_done",
            "pairs done",
            f' / <span id="live-pairs">{figures["pairs"]}</span>',
        )
        + figure(
            "chunks_done",
            "chunks done",
            f' / <span id="live-chunks">{figures["chunks"]}</span>',
        )
        + figure("rate_pps", "probes per second")
        + figure("elapsed_s", "seconds")
        + f'<div class="figure">silent agents<b id="live-silent_agents">'
        f"{escape(silent)}</b></div></div>"
    )


async def report_page(request: web.Request) -> web.Response:
    try:
        report = await request.app[RUNS].report(request.match_info["run"])
    except NotFoundError as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc

    return web.Response(text=html.render(report), content_type="text/html")


async def live_json(request: web.Request) -> web.Response:
    manager = request.app[RUNS]
    try:
        run = await manager.find(request.match_info["run"])
    except CoordinatorError as exc:
        return web.json_response({"error": str(exc)}, status=404)

    return web.json_response(await live.snapshot(manager.store, run))


async def evidence_tar(request: web.Request) -> web.Response:
    manager = request.app[RUNS]
    try:
        run = await manager.find(request.match_info["run"])
        if manager.vault is None:
            raise NotFoundError(run.id, "this coordinator keeps no evidence bundles")
        files = await asyncio.to_thread(manager.vault.files, run.id)
    except CoordinatorError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}

    return web.json_response({"run": run.id, "files": encoded})


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
