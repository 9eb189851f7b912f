"""The store on real SQLite and PostgreSQL: runs, idempotent result intake, agents."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from coordinator import metrics
from coordinator.store import (
    AgentRecord,
    ChunkState,
    Intake,
    PairRecord,
    Posted,
    RunRecord,
    Store,
)
from coordinator.store import chunks as chunks_table
from protocol import codec
from protocol.messages import (
    Assignment,
    Finding,
    PortState,
    Proto,
    Reason,
    Result,
)

ResultFor = Callable[..., Result]
PAIRS = [
    PairRecord("corp-a", "cde-a", "closed", None),
    PairRecord("cde-a", "corp-a", "open", {"tcp": [[443, 443]], "udp": []}),
]


def _run(
    run_id: str = "run-1", created_at: float = 100.0, kind: str = "full"
) -> RunRecord:
    return RunRecord(
        id=run_id,
        kind=kind,
        base_run=None,
        policy_source="policy.yaml",
        policy_text="version: 1\n",
        policy_sha256="0" * 64,
        created_at=created_at,
        deadline=created_at + 120,
        finished_at=None,
        verdict=None,
        report=None,
    )


def _assignment(chunk_id: str, src: str = "corp-a", dst: str = "cde-a") -> Assignment:
    return Assignment(
        id=chunk_id,
        run_id="run-1",
        src=src,
        dst=dst,
        targets=("10.0.1.0/28",),
        tcp=((22, 22),),
        udp=(),
        rate_pps=100,
        passes=1,
        issued_at=100.0,
        expires_at=3700.0,
    )


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every test here runs on SQLite and on PostgreSQL."""
    return any_store


async def _intake(store: Store, result: Result) -> Intake:
    return await store.add_result(result, codec.encode(result))


@pytest.fixture
async def planned(store: Store) -> list[Assignment]:
    """Run ``run-1`` with two chunks from corp-a and one from cde-a."""
    assignments = [
        _assignment("c1"),
        _assignment("c2"),
        _assignment("c3", "cde-a", "corp-a"),
    ]
    await store.add_run(_run(), PAIRS, [(a, 14) for a in assignments])

    return assignments


async def test_a_planned_run_reads_back_whole(
    store: Store, planned: list[Assignment]
) -> None:
    run = await store.run("run-1")
    pairs = await store.pairs("run-1")
    chunks = await store.chunks("run-1")

    assert run == _run()
    assert sorted(pairs, key=lambda p: p.src) == sorted(PAIRS, key=lambda p: p.src)
    assert {c.id: c.assignment for c in chunks} == {a.id: a for a in planned}
    assert {(c.probes, c.state) for c in chunks} == {(14, ChunkState.QUEUED)}


async def test_chunk_counts_follow_stored_results(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    before = await store.chunk_counts("run-1")
    await _intake(store, result_for(planned[0]))

    after = await store.chunk_counts("run-1")

    assert before == {"queued": 3}
    assert after == {"queued": 2, "done": 1}


async def test_a_result_is_stored_once_and_a_second_copy_is_a_duplicate(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    result = result_for(planned[0])

    first = await _intake(store, result)
    second = await _intake(store, result_for(planned[0], agent="corp-a@other"))

    assert (first, second) == (Intake.STORED, Intake.DUPLICATE)
    assert await store.results("run-1") == [result]


async def test_a_result_for_an_unknown_assignment_is_refused(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    intake = await _intake(store, result_for(_assignment("nope")))

    assert intake is Intake.UNKNOWN
    assert await store.results("run-1") == []


async def test_a_result_from_another_subnet_is_refused(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """Only the agent of the subnet a chunk was addressed to may answer it."""
    intake = await _intake(store, result_for(planned[0], src="cde-a"))

    assert intake is Intake.WRONG_SUBNET
    assert await store.results("run-1") == []
    assert await store.chunk_counts("run-1") == {"queued": 3}


async def test_two_copies_arriving_together_are_stored_once(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    result = result_for(planned[0])

    intakes = await asyncio.gather(_intake(store, result), _intake(store, result))

    assert sorted(intakes) == [Intake.DUPLICATE, Intake.STORED]


async def test_a_chunk_counted_done_has_a_result_its_run_can_see(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    await _intake(store, result_for(planned[0], run_id="run-other"))

    done = (await store.chunk_counts("run-1")).get("done", 0)

    assert done == len(await store.results("run-1"))


async def test_a_run_is_recorded_all_or_nothing(store: Store) -> None:
    twice = [(_assignment("c1"), 14), (_assignment("c1"), 14)]

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await store.add_run(_run(), PAIRS, twice)

    assert await store.run("run-1") is None
    assert await store.pairs("run-1") == []


async def test_latest_and_listed_runs_are_newest_first(store: Store) -> None:
    await store.add_run(_run("old", 100.0), PAIRS, [(_assignment("c1"), 1)])
    await store.add_run(_run("new", 200.0, "rescan"), PAIRS, [(_assignment("c2"), 1)])

    latest = await store.latest_run()
    latest_full = await store.latest_run("full")
    listed = await store.runs()

    assert getattr(latest, "id", None) == "new"
    assert getattr(latest_full, "id", None) == "old"
    assert [r.id for r in listed] == ["new", "old"]
    assert await store.run("absent") is None


async def test_finishing_a_run_keeps_its_verdict_and_report(
    store: Store, planned: list[Assignment]
) -> None:
    await store.finish_run("run-1", "pass", {"verdict": "pass", "pairs": []}, 150.0)

    run = await store.run("run-1")

    assert run is not None
    assert (run.finished_at, run.verdict) == (150.0, "pass")
    assert run.report == {"verdict": "pass", "pairs": []}
    assert await store.unfinished_runs() == []


async def test_a_heartbeat_inserts_an_agent_then_updates_it(store: Store) -> None:
    await store.touch_agent("corp-a@h", "corp-a", 10.0, None)
    await store.touch_agent("cde-a@h", "cde-a", 11.0, None)
    await store.touch_agent("corp-a@h", "corp-a", 20.0, "c1")

    agents = sorted(await store.agents(), key=lambda a: a.id)

    assert agents == [
        AgentRecord("cde-a@h", "cde-a", 11.0, None),
        AgentRecord("corp-a@h", "corp-a", 20.0, "c1"),
    ]


async def test_reopening_the_database_keeps_what_was_stored(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """Tables are created only where missing; a restart loses nothing."""
    await _intake(store, result_for(planned[0]))
    url = store.engine.url.render_as_string(hide_password=False)

    again = await Store.open(url)
    try:
        counts = await again.chunk_counts("run-1")
    finally:
        await again.close()

    assert counts == {"queued": 2, "done": 1}


async def _late_rows(store: Store) -> list[str]:
    from coordinator.store import late_results

    query = sa.select(late_results.c.assignment_id).order_by(late_results.c.id)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def test_a_late_result_of_a_rerun_chunk_is_kept_but_not_counted(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """A second scan of a redelivered chunk: evidence, never a second count."""
    first = result_for(planned[0])
    rerun = result_for(planned[0], agent="corp-a@other", finished_at=999.0)

    intakes = [await _intake(store, first), await _intake(store, rerun)]
    again = await _intake(store, rerun)

    assert intakes == [Intake.STORED, Intake.DUPLICATE]
    assert again is Intake.DUPLICATE
    assert await store.results("run-1") == [first]
    assert await _late_rows(store) == [planned[0].id]
    assert (await store.chunk_counts("run-1"))["done"] == 1


async def test_a_result_after_the_run_finished_is_kept_apart(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """A frozen report stays frozen: the result is evidence, the chunk stays open."""
    await store.finish_run("run-1", "inconclusive", {"pairs": []}, 150.0)

    intake = await _intake(store, result_for(planned[0]))

    assert intake is Intake.DUPLICATE
    assert await store.results("run-1") == []
    assert await _late_rows(store) == [planned[0].id]
    assert await store.chunk_counts("run-1") == {"queued": 3}


async def test_a_dead_chunk_whose_result_arrives_is_done_after_all(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """One copy dead-lettered while another's result was on its way."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(chunks_table)
            .where(chunks_table.c.id == planned[0].id)
            .values(state=ChunkState.DEAD, dead_reason="dead-lettered")
        )

    intake = await _intake(store, result_for(planned[0]))

    assert intake is Intake.STORED
    assert (await store.chunk_counts("run-1"))["done"] == 1


async def test_a_batch_of_mixed_posts_gets_one_outcome_each(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    """Posts filed together are told apart exactly as posts filed alone."""
    good = result_for(planned[0])
    posts = [
        Posted(good, codec.encode(good)),
        Posted(good, codec.encode(good)),
        Posted(result_for(_assignment("nope")), b"x"),
        Posted(result_for(planned[1], src="cde-a"), b"y"),
        Posted(result_for(planned[2]), codec.encode(result_for(planned[2]))),
    ]

    outcomes = await store.add_results(posts)

    assert outcomes == [
        Intake.STORED,
        Intake.DUPLICATE,
        Intake.UNKNOWN,
        Intake.WRONG_SUBNET,
        Intake.STORED,
    ]
    assert len(await store.results("run-1")) == 2


async def test_stored_results_and_their_findings_are_counted_in_metrics(
    store: Store, planned: list[Assignment], result_for: ResultFor
) -> None:
    finding = Finding(
        "10.0.1.5", Proto.TCP, ((22, 22),), PortState.OPEN, Reason.SYN_ACK
    )
    before = _sample("segscan_results_total", {"outcome": "stored"})
    found_before = _sample("segscan_findings_total", {})

    await _intake(store, result_for(planned[0], finding, finding))
    await _intake(store, result_for(planned[0], finding, finding))

    assert _sample("segscan_results_total", {"outcome": "stored"}) == before + 1
    assert _sample("segscan_findings_total", {}) == found_before + 2


def _sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0
