"""Run accounting: where every chunk stands, and the loop that moves chunks on.

Every planned chunk is ``queued`` (waiting for its destination's budget),
``leased`` (on its source's queue), ``done`` (exactly one result stored and
counted) or ``dead`` (its message was dead-lettered).  A run is settled when
none is queued or leased; at its deadline it settles anyway, and the pairs
left with open chunks are inconclusive, naming them (coordinator/verdict.py).
The background loop leases what the budgets allow every second and drains
the dead-letter queues every few seconds; ``/v1/runs/{run}/accounting`` and
``/metrics`` show the books.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

import sqlalchemy as sa
import structlog
from aiobotocore.session import get_session
from aiohttp import web
from botocore.config import Config

from coordinator import leasing, metrics
from coordinator.deadletters import Drain, watched_sources
from coordinator.dispatch import Dispatcher
from coordinator.errors import QueueError
from coordinator.store import UNSETTLED, Store
from coordinator.tables import chunks, dead_letters, late_results, results, runs

log = structlog.get_logger(__name__)

SILENT_AFTER_S = 30.0  # three heartbeats missed (agent/runner.py beats every 10 s)
PUMP_INTERVAL_S = 1.0
SWEEP_EVERY = 5  # pumps between two sweeps of the dead-letter queues
_SQS_CONFIG = Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10)

STORE = web.AppKey("accounting_store", Store)
MOVER = web.AppKey("accounting_mover", tuple[Store, Dispatcher])


def settled(counts: Mapping[str, int]) -> bool:
    """Whether chunk counts by state leave nothing queued or leased."""
    return not any(counts.get(state, 0) for state in UNSETTLED)


async def unsettled(store: Store, run_id: str) -> int:
    """How many of the run's chunks are still queued or leased."""
    query = sa.select(sa.func.count()).where(
        chunks.c.run_id == run_id, chunks.c.state.in_(UNSETTLED)
    )
    async with store.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def books(store: Store, run_id: str) -> dict[str, Any]:
    """Every chunk of a run with its state, results and dead letters."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(chunks).where(chunks.c.run_id == run_id).order_by(chunks.c.id)
            )
        ).all()
        counted = await _per_chunk(conn, results, run_id)
        late = await _per_chunk(conn, late_results, run_id)
        letters = (
            await conn.execute(
                sa.select(dead_letters).where(dead_letters.c.run_id == run_id)
            )
        ).all()
    listed = [_chunk(row, counted.get(row.id, 0), late.get(row.id, 0)) for row in rows]
    counts: dict[str, int] = {}
    for chunk in listed:
        counts[chunk["state"]] = counts.get(chunk["state"], 0) + 1

    return {
        "run": run_id,
        "counts": counts,
        "settled": settled(counts),
        "chunks": listed,
        "results": sum(counted.values()),
        "late_results": sum(late.values()),
        "dead_letters": [_letter(row) for row in letters],
    }


async def _per_chunk(conn: Any, table: sa.Table, run_id: str) -> dict[str, int]:
    query = (
        sa.select(table.c.assignment_id, sa.func.count())
        .where(table.c.run_id == run_id)
        .group_by(table.c.assignment_id)
    )

    return {chunk: int(n) for chunk, n in await conn.execute(query)}


def _chunk(row: sa.Row[Any], counted: int, late: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "src": row.src,
        "dst": row.dst,
        "state": row.state,
        "probes": row.probes,
        "rate_pps": row.rate_pps,
        "budget_pps": row.budget_pps,
        "leased_at": row.leased_at,
        "settled_at": row.settled_at,
        "dead_reason": row.dead_reason,
        "results": counted,
        "late_results": late,
    }


def _letter(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "message_id": row.message_id,
        "queue": row.queue,
        "chunk": row.chunk_id,
        "run": row.run_id,
        "receive_count": row.receive_count,
        "received_at": row.received_at,
        "reason": row.reason,
    }


async def recent_dead_letters(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """The newest dead letters, bodies and all, whether or not of a run."""
    query = (
        sa.select(dead_letters).order_by(dead_letters.c.received_at.desc()).limit(limit)
    )
    async with store.engine.connect() as conn:
        return [_letter(row) | {"body": row.body} for row in await conn.execute(query)]


def add_routes(app: web.Application, store: Store) -> None:
    """Serve the books and the metrics of ``store``."""
    app[STORE] = store
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/v1/runs/{run}/accounting", get_books)
    app.router.add_get("/v1/deadletters", get_dead_letters)


def keep_moving(app: web.Application, store: Store, dispatcher: Dispatcher) -> None:
    """Lease and drain dead letters in the background while ``app`` serves.

    Apart from the routes so that tests of the routes never reach for SQS.
    """
    app[MOVER] = (store, dispatcher)
    app.cleanup_ctx.append(_mover)


async def get_books(request: web.Request) -> web.Response:
    store = request.app[STORE]
    run_id = request.match_info["run"]
    if run_id == "latest":
        latest = await store.latest_run()
        run_id = latest.id if latest else ""
    if await store.run(run_id) is None:
        return web.json_response({"error": f"{run_id}: no such run"}, status=404)

    return web.json_response(await books(store, run_id))


async def get_dead_letters(request: web.Request) -> web.Response:
    return web.json_response(await recent_dead_letters(request.app[STORE]))


async def get_metrics(request: web.Request) -> web.Response:
    store = request.app[STORE]
    now = time.time()
    async with store.engine.connect() as conn:
        by_state = {state: int(n) for state, n in await conn.execute(_BY_STATE)}
        open_chunks = int((await conn.execute(_UNSETTLED)).scalar_one())
        letters = int((await conn.execute(_LETTERS)).scalar_one())
    metrics.set_chunks(by_state, open_chunks)
    metrics.DEAD_LETTERS.set(letters)
    seen = [(a.id, a.subnet, a.last_seen) for a in await store.agents()]
    metrics.set_agents(seen, SILENT_AFTER_S, now)

    return web.Response(
        body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE}
    )


_BY_STATE = sa.select(chunks.c.state, sa.func.count()).group_by(chunks.c.state)
_UNSETTLED = sa.select(sa.func.count()).where(
    chunks.c.state.in_(UNSETTLED),
    chunks.c.run_id.in_(sa.select(runs.c.id).where(runs.c.finished_at.is_(None))),
)
_LETTERS = sa.select(sa.func.count()).select_from(dead_letters)


async def _mover(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(move_forever(*app[MOVER]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def move_forever(store: Store, dispatcher: Dispatcher) -> None:
    """Lease chunks every second and drain dead letters every few, until cancelled."""
    config = dispatcher.config
    async with get_session().create_client(
        "sqs",
        region_name=config.region,
        endpoint_url=config.endpoint,
        config=_SQS_CONFIG,
    ) as client:
        drain = Drain(store, config, client)
        for tick in itertools.count():
            await _step(_lease(store, dispatcher), "lease_failed")
            if tick % SWEEP_EVERY == 0:
                await _step(_sweep(store, drain), "dead_letter_sweep_failed")
            await asyncio.sleep(PUMP_INTERVAL_S)


async def _lease(store: Store, dispatcher: Dispatcher) -> None:
    await leasing.pump(store, dispatcher)


async def _sweep(store: Store, drain: Drain) -> None:
    await drain.sweep(await watched_sources(store, time.time()))


async def _step(step: Awaitable[None], event: str) -> None:
    """Run one step of the loop; a failure is logged, and the loop goes on."""
    try:
        await step
    except QueueError as exc:
        log.warning(event, error=str(exc))
    except Exception:
        log.exception(event)
