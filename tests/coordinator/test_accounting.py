"""Run accounting: the books of a run, settling with dead chunks, /metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from coordinator import accounting, deadletters
from coordinator.policy import Policy, load_policy
from coordinator.runs import RunManager
from coordinator.store import Store
from coordinator.verdict import Verdict
from protocol import codec
from protocol.messages import Assignment, Result

ResultFor = Callable[..., Result]


@pytest.fixture
def founding(founding_policy: Any) -> Policy:
    return load_policy(founding_policy)


async def _answer(
    store: Store, result_for: ResultFor, chunks: list[Assignment]
) -> None:
    for assignment in chunks:
        result = result_for(assignment)
        await store.add_result(result, codec.encode(result))


async def _bury(store: Store, assignment: Assignment) -> None:
    body = codec.to_text(codec.encode(assignment))
    letter = deadletters.read(f"m-{assignment.id}", "segscan-x-dlq", body, 5)
    await deadletters.record(store, letter, time.time())


async def test_books_count_every_chunk_once_by_state(
    run_manager: RunManager,
    founding: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    run = await run_manager.start(founding)
    await _answer(run_manager.store, result_for, dispatched[:10])
    await _bury(run_manager.store, dispatched[10])

    books = await accounting.books(run_manager.store, run.id)

    assert books["counts"] == {"done": 10, "dead": 1, "leased": 43}
    assert not books["settled"]
    assert len(books["chunks"]) == 54
    assert books["results"] == 10
    assert {c["state"] for c in books["chunks"] if c["results"]} == {"done"}
    assert [d["chunk"] for d in books["dead_letters"]] == [dispatched[10].id]


async def test_a_run_with_a_dead_chunk_settles_inconclusive_naming_it(
    run_manager: RunManager,
    founding: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    """Every chunk settled, one of them dead: no waiting for the deadline."""
    run = await run_manager.start(founding)
    lost = next(a for a in dispatched if (a.src, a.dst) == ("corp-a", "cde-a"))
    await _answer(run_manager.store, result_for, [a for a in dispatched if a != lost])
    await _bury(run_manager.store, lost)

    settled = await run_manager.settle()

    report = await run_manager.report(run.id)
    pair = next(
        p for p in report["pairs"] if (p["src"], p["dst"]) == ("corp-a", "cde-a")
    )
    assert settled == [run.id]
    assert pair["verdict"] == Verdict.INCONCLUSIVE
    assert lost.id in pair["reason"]
    assert "dead-lettered after 5 receives" in pair["reason"]
    assert report["verdict"] == Verdict.INCONCLUSIVE


async def test_unsettled_counts_only_queued_and_leased(
    run_manager: RunManager,
    founding: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    run = await run_manager.start(founding)
    await _answer(run_manager.store, result_for, dispatched[:4])
    await _bury(run_manager.store, dispatched[4])

    assert await accounting.unsettled(run_manager.store, run.id) == 49
    assert accounting.settled({"done": 3, "dead": 1})
    assert not accounting.settled({"done": 3, "leased": 1})


@pytest.fixture
async def client(run_manager: RunManager) -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    accounting.add_routes(app, run_manager.store)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_accounting_route_shows_a_run_and_404s_an_unknown_one(
    client: TestClient[Any, Any], run_manager: RunManager, founding: Policy
) -> None:
    run = await run_manager.start(founding)

    reply = await client.get(f"/v1/runs/{run.id}/accounting")
    latest = await client.get("/v1/runs/latest/accounting")
    unknown = await client.get("/v1/runs/nope/accounting")

    assert reply.status == 200
    assert (await reply.json())["counts"] == {"leased": 54}
    assert (await latest.json())["run"] == run.id
    assert unknown.status == 404


async def test_metrics_show_chunks_results_and_silent_agents(
    client: TestClient[Any, Any],
    run_manager: RunManager,
    founding: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    await run_manager.start(founding)
    await _answer(run_manager.store, result_for, dispatched[:2])
    now = time.time()
    await run_manager.store.touch_agent("corp-a@h", "corp-a", now, None)
    await run_manager.store.touch_agent("corp-b@h", "corp-b", now - 600, None)

    reply = await client.get("/metrics")
    text = await reply.text()

    assert reply.status == 200
    assert reply.content_type == "text/plain"
    assert 'segscan_chunks{state="done"} 2.0' in text
    assert 'segscan_chunks{state="leased"} 52.0' in text
    assert "segscan_unsettled_chunks 52.0" in text
    assert 'segscan_agents{state="silent"} 1.0' in text
    assert 'segscan_agents{state="live"} 1.0' in text
    assert 'segscan_results_total{outcome="stored"}' in text
    assert "segscan_intake_seconds_bucket" in text
