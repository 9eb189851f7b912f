"""The coordinator's HTTP service: result intake, heartbeats, health, runs.

Agents post signed msgpack (coordinator/intake.py); operators' commands speak
JSON, and those that change state need the operator token
(coordinator/auth.py).  A background task settles runs that are complete or
past their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from coordinator import accounting, dashboard, intake
from coordinator.auth import AgentKeys, operator_guard
from coordinator.errors import CoordinatorError, NotFoundError, QueueError
from coordinator.policy import parse_policy
from coordinator.runs import RunManager
from coordinator.store import Store

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
SETTLE_INTERVAL_S = 1.0

MANAGER = web.AppKey("manager", RunManager)
STORE = web.AppKey("store", Store)


def make_app(
    manager: RunManager, agent_keys: AgentKeys, operator_token: str
) -> web.Application:
    """The aiohttp application around a run manager."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[operator_guard(operator_token)]
    )
    app[MANAGER] = manager
    app[STORE] = manager.store
    app.router.add_get("/healthz", healthz)
    intake.add_routes(app, manager.store, agent_keys)
    app.router.add_get("/v1/runs", list_runs)
    app.router.add_post("/v1/runs", post_run)
    app.router.add_get("/v1/runs/{run}", get_run)
    app.router.add_get("/v1/runs/{run}/report", get_report)
    app.router.add_post("/v1/rescans", post_rescan)
    app.router.add_get("/v1/agents", list_agents)
    dashboard.add_routes(app, manager)
    accounting.add_routes(app, manager.store)
    app.cleanup_ctx.append(_settler)

    return app


async def _settler(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_settle_forever(app[MANAGER]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _settle_forever(manager: RunManager) -> None:
    while True:
        try:
            await manager.settle()
        except Exception:
            log.exception("settle_failed")
        await asyncio.sleep(SETTLE_INTERVAL_S)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_runs(request: web.Request) -> web.Response:
    runs = await request.app[STORE].runs()

    return web.json_response(
        [
            {
                "run": r.id,
                "kind": r.kind,
                "base_run": r.base_run,
                "created_at": r.created_at,
                "finished_at": r.finished_at,
                "verdict": r.verdict,
            }
            for r in runs
        ]
    )


async def post_run(request: web.Request) -> web.Response:
    data = await _json(request)
    try:
        policy = parse_policy(str(data.get("policy", "")), str(data.get("source")))
        run = await request.app[MANAGER].start(policy)
    except CoordinatorError as exc:
        return _error(exc)

    return web.json_response({"run": run.id}, status=201)


async def post_rescan(request: web.Request) -> web.Response:
    data = await _json(request)
    manager, base_run = request.app[MANAGER], data.get("base_run")
    try:
        if "pairs" in data:
            run = await manager.rescan_pairs(_pair_list(data["pairs"]), base_run)
        else:
            run = await manager.rescan(
                str(data.get("src")),
                str(data.get("dst")),
                str(data.get("direction", "both")),
                base_run,
            )
    except CoordinatorError as exc:
        return _error(exc)

    return web.json_response({"run": run.id}, status=201)


def _pair_list(value: Any) -> list[tuple[str, str]]:
    try:
        return [(str(src), str(dst)) for src, dst in value]
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(reason="pairs must be [[src, dst], ...]") from None


async def get_run(request: web.Request) -> web.Response:
    try:
        progress = await request.app[MANAGER].progress(request.match_info["run"])
    except CoordinatorError as exc:
        return _error(exc)

    return web.json_response(progress)


async def get_report(request: web.Request) -> web.Response:
    try:
        body = await request.app[MANAGER].report(request.match_info["run"])
    except CoordinatorError as exc:
        return _error(exc)

    return web.json_response(body)


async def list_agents(request: web.Request) -> web.Response:
    now = time.time()
    agents = await request.app[STORE].agents()

    return web.json_response(
        [
            {
                "agent": a.id,
                "subnet": a.subnet,
                "last_seen_s_ago": round(now - a.last_seen, 1),
                "silent": now - a.last_seen > accounting.SILENT_AFTER_S,
                "assignment": a.assignment_id,
            }
            for a in agents
        ]
    )


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(reason="body is not a JSON object")

    return data


def _error(exc: CoordinatorError) -> web.Response:
    status = 404 if isinstance(exc, NotFoundError) else 400
    if isinstance(exc, QueueError):
        status = 503
    body = {"error": str(exc), "kind": type(exc).__name__, "subject": exc.subject}

    return web.json_response(body, status=status)
