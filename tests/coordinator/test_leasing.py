"""Leasing on SQLite and PostgreSQL: budgets hold across runs, sends come first."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from coordinator import leasing, planner
from coordinator.dispatch import Dispatcher, QueueConfig
from coordinator.errors import QueueError
from coordinator.store import ChunkState, PairRecord, RunRecord, Store
from protocol import codec
from protocol.messages import Assignment, Result

PAIR = [PairRecord("corp-a", "cde-a", "closed", None)]


class Recorder(Dispatcher):
    """Records what it is asked to send; fails for the sources in ``down``."""

    def __init__(self, down: Sequence[str] = ()) -> None:
        super().__init__(QueueConfig())
        self.sent: list[Assignment] = []
        self.down = set(down)

    async def send(self, assignments: Sequence[Assignment]) -> None:
        if {a.src for a in assignments} & self.down:
            raise QueueError("segscan-" + assignments[0].src, "no such queue")
        self.sent.extend(assignments)


def _run(run_id: str) -> RunRecord:
    return RunRecord(
        id=run_id,
        kind="full",
        base_run=None,
        policy_source="policy.yaml",
        policy_text="version: 1\n",
        policy_sha256="0" * 64,
        created_at=100.0,
        deadline=10_000.0,
        finished_at=None,
        verdict=None,
        report=None,
    )


def _assignment(chunk: str, src: str, dst: str, run_id: str = "run-1") -> Assignment:
    return Assignment(
        id=chunk,
        run_id=run_id,
        src=src,
        dst=dst,
        targets=("10.0.1.0/28",),
        tcp=((22, 22),),
        udp=(),
        rate_pps=900,
        passes=1,
        issued_at=100.0,
        expires_at=3700.0,
    )


async def _plan(store: Store, run_id: str, chunks: list[Assignment]) -> None:
    await store.add_run(_run(run_id), PAIR, [(a, 14) for a in chunks])


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


async def test_a_pump_sends_each_chunk_at_its_share_and_marks_it_leased(
    store: Store,
) -> None:
    """Three sources into cde-a: each at a third of the budget, issued now."""
    chunks = [_assignment(f"c{i}", f"corp-{i}", "cde-a") for i in range(3)]
    await _plan(store, "run-1", chunks)
    recorder = Recorder()

    leased = await leasing.pump(store, recorder, now=5000.0)

    assert leased == 3
    assert {a.rate_pps for a in recorder.sent} == {300}
    assert {a.issued_at for a in recorder.sent} == {5000.0}
    assert {a.expires_at for a in recorder.sent} == {5000.0 + planner.ASSIGNMENT_TTL_S}
    stored = {c.id: c for c in await store.chunks("run-1")}
    assert {c.state for c in stored.values()} == {ChunkState.LEASED}
    assert stored["c0"].assignment == recorder.sent[0]


async def test_a_destination_never_gets_more_than_its_budget_across_runs(
    store: Store,
) -> None:
    """A second run into the same subnet waits until the first one's leases end."""
    await _plan(store, "run-1", [_assignment("a", "corp-a", "cde-a")])
    await _plan(store, "run-2", [_assignment("b", "corp-b", "cde-a", "run-2")])
    recorder = Recorder()

    first = await leasing.pump(store, recorder)
    again = await leasing.pump(store, recorder)
    await store.finish_run("run-1", "pass", {}, 200.0)
    after = await leasing.pump(store, recorder)

    assert (first, again, after) == (1, 0, 1)
    assert [a.id for a in recorder.sent] == ["a", "b"]
    assert all(a.rate_pps == 900 for a in recorder.sent)


async def test_a_chunk_done_gives_its_share_back(
    store: Store, result_for: Callable[..., Result]
) -> None:
    """A waiting run's chunk goes out once the chunk holding the budget is done."""
    await _plan(store, "run-1", [_assignment("a", "corp-a", "cde-a")])
    await _plan(store, "run-2", [_assignment("b", "corp-b", "cde-a", "run-2")])
    recorder = Recorder()
    await leasing.pump(store, recorder)
    done = result_for(recorder.sent[0])

    await store.add_result(done, codec.encode(done))
    after = await leasing.pump(store, recorder)

    assert after == 1
    assert [a.id for a in recorder.sent] == ["a", "b"]


async def test_a_queue_that_fails_leaves_its_chunks_queued(store: Store) -> None:
    """Sources whose queues took their chunks are leased; the failed one waits."""
    chunks = [_assignment("ok", "corp-a", "cde-a"), _assignment("no", "bad", "cde-b")]
    await _plan(store, "run-1", chunks)

    with pytest.raises(QueueError):
        await leasing.pump(store, Recorder(down=["bad"]))

    states = {c.id: c.state for c in await store.chunks("run-1")}
    assert states["no"] == ChunkState.QUEUED
    assert states["ok"] in (ChunkState.LEASED, ChunkState.QUEUED)
    retried = Recorder()
    await leasing.pump(store, retried)
    assert "no" in {a.id for a in retried.sent}


async def test_chunks_of_a_finished_run_are_never_sent(store: Store) -> None:
    await _plan(store, "run-1", [_assignment("c", "corp-a", "cde-a")])
    await store.finish_run("run-1", "inconclusive", {}, 200.0)
    recorder = Recorder()

    assert await leasing.pump(store, recorder) == 0
    assert recorder.sent == []
