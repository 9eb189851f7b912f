"""Runs from plan to verdict: start, rescan, live judging, settling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from coordinator import runs
from coordinator.errors import NotFoundError, UsageError
from coordinator.policy import Policy, load_policy, parse_policy
from coordinator.runs import RunManager
from coordinator.store import RunRecord, Store
from coordinator.store import runs as runs_table
from coordinator.verdict import Verdict
from protocol import codec
from protocol.messages import Assignment, Finding, PortState, Proto, Reason, Result

ResultFor = Callable[..., Result]
OPEN_SSH = Finding("10.0.3.5", Proto.TCP, ((22, 22),), PortState.OPEN, Reason.CONNECTED)


SMALL = """\
version: 1
segments:
  cde: {subnets: {cde-a: 10.0.1.0/28, cde-b: 10.0.2.0/28, cde-c: 10.0.3.0/28}}
  corp: {subnets: {corp-a: 172.16.1.0/28, corp-b: 172.16.2.0/28}}
rules:
  - {from: corp, to: cde, expect: closed}
  - {from: cde, to: corp, expect: open}
scan: {tcp: [22, 443]}
"""


@pytest.fixture
def founding(founding_policy: Path) -> Policy:
    return load_policy(founding_policy)


@pytest.fixture
def small() -> Policy:
    """The founding shape cut down to 12 pairs, so answering them all is quick."""
    return parse_policy(SMALL, "small.yaml")


async def _answer_all(
    store: Store, result_for: ResultFor, assignments: list[Assignment]
) -> None:
    for assignment in assignments:
        hole = (assignment.src, assignment.dst) == ("corp-b", "cde-c")
        result = result_for(assignment, *([OPEN_SSH] if hole else []))
        await store.add_result(result, codec.encode(result))


@pytest.fixture
async def answered(
    run_manager: RunManager,
    small: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> RunRecord:
    """A run of ``small`` whose every chunk has its result."""
    run = await run_manager.start(small)
    await _answer_all(run_manager.store, result_for, dispatched)

    return run


async def _expire(store: Store, run_id: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(runs_table).where(runs_table.c.id == run_id).values(deadline=0.0)
        )


async def test_start_records_the_run_and_dispatches_every_chunk(
    run_manager: RunManager, founding: Policy, dispatched: list[Assignment]
) -> None:
    run = await run_manager.start(founding)

    chunks = await run_manager.store.chunks(run.id)
    assert run.kind == "full"
    assert run.policy_sha256 == founding.sha256
    assert run.deadline >= run.created_at + runs.DEADLINE_MIN_S
    assert len(dispatched) == 54
    assert {a.id for a in dispatched} == {c.id for c in chunks}
    assert {a.run_id for a in dispatched} == {run.id}
    assert len(await run_manager.store.pairs(run.id)) == 54


async def test_progress_counts_chunks_done(
    run_manager: RunManager,
    small: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    run = await run_manager.start(small)
    await _answer_all(run_manager.store, result_for, dispatched[:10])

    progress = await run_manager.progress(run.id)

    assert progress["chunks"] == 12
    assert progress["chunks_done"] == 10
    assert progress["finished"] is False
    assert progress["deadline_in_s"] > 0


async def test_a_live_report_shows_pending_pairs(
    run_manager: RunManager, founding: Policy
) -> None:
    run = await run_manager.start(founding)

    body = await run_manager.report(run.id)

    assert body["verdict"] == "pending"
    assert body["finished_at"] is None
    assert {p["verdict"] for p in body["pairs"]} == {"pending"}


async def test_settle_waits_while_chunks_are_out_and_the_deadline_is_ahead(
    run_manager: RunManager,
    small: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    run = await run_manager.start(small)
    await _answer_all(run_manager.store, result_for, dispatched[:-1])

    settled = await run_manager.settle()

    assert settled == []
    assert (await run_manager.find(run.id)).finished_at is None


async def test_settle_freezes_the_report_once_every_result_is_in(
    run_manager: RunManager, answered: RunRecord
) -> None:
    run = answered
    with capture_logs() as logs:
        settled = await run_manager.settle()

    stored = await run_manager.find(run.id)
    body = stored.report or {"pairs": []}
    verdicts = {(p["src"], p["dst"]): p["verdict"] for p in body["pairs"]}
    assert settled == [run.id]
    assert stored.verdict == "fail"
    assert verdicts[("corp-b", "cde-c")] == "fail"
    assert verdicts[("corp-a", "cde-a")] == "pass"
    assert verdicts[("cde-a", "corp-a")] == "allowed"
    assert [e["timed_out"] for e in logs if e["event"] == "run_settled"] == [False]
    assert await run_manager.report(run.id) == stored.report


async def test_settle_after_the_deadline_makes_silent_pairs_inconclusive(
    run_manager: RunManager,
    small: Policy,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    run = await run_manager.start(small)
    clean = [a for a in dispatched if (a.src, a.dst) != ("corp-b", "cde-c")]
    await _answer_all(run_manager.store, result_for, clean[:-1])
    await _expire(run_manager.store, run.id)

    with capture_logs() as logs:
        await run_manager.settle()

    body = await run_manager.report(run.id)
    silent = [p for p in body["pairs"] if p["coverage"]["chunks_done"] == 0]
    assert body["verdict"] == "inconclusive"
    assert len(silent) == 2
    assert {p["verdict"] for p in silent} == {"inconclusive"}
    assert [e["timed_out"] for e in logs if e["event"] == "run_settled"] == [True]


async def test_a_settled_run_is_not_settled_again(
    run_manager: RunManager, answered: RunRecord
) -> None:
    assert await run_manager.settle() == [answered.id]

    again = await run_manager.settle()

    assert again == []


async def test_settling_at_once_from_two_callers_settles_a_run_once(
    run_manager: RunManager, answered: RunRecord
) -> None:
    """The service's settler and another caller: the run is judged once."""
    run = answered
    with capture_logs() as logs:
        outcomes = await asyncio.gather(run_manager.settle(), run_manager.settle())

    assert sorted(outcomes) == [[], [run.id]]
    assert [e["run"] for e in logs if e["event"] == "run_settled"] == [run.id]


async def test_rescan_is_a_new_run_over_both_directions_with_fresh_chunks(
    run_manager: RunManager, founding: Policy, dispatched: list[Assignment]
) -> None:
    base = await run_manager.start(founding)
    first_ids = {a.id for a in dispatched}
    # Until the base run ends, its leases hold both subnets' rate budgets.
    await run_manager.store.finish_run(base.id, "pass", {}, base.created_at + 1)

    rescan = await run_manager.rescan("corp-a", "cde-a", "both", None)

    pairs = await run_manager.store.pairs(rescan.id)
    fresh = dispatched[54:]
    assert (rescan.kind, rescan.base_run) == ("rescan", base.id)
    assert sorted((p.src, p.dst, p.expect) for p in pairs) == [
        ("cde-a", "corp-a", "open"),
        ("corp-a", "cde-a", "closed"),
    ]
    assert len(fresh) == 2
    assert not first_ids & {a.id for a in fresh}


async def test_rescan_forward_covers_only_src_to_dst(
    run_manager: RunManager, founding: Policy
) -> None:
    await run_manager.start(founding)

    rescan = await run_manager.rescan("corp-a", "cde-a", "forward", None)

    pairs = await run_manager.store.pairs(rescan.id)
    assert [(p.src, p.dst) for p in pairs] == [("corp-a", "cde-a")]


async def test_rescan_of_an_unknown_subnet_names_the_known_ones(
    run_manager: RunManager, founding: Policy
) -> None:
    await run_manager.start(founding)

    with pytest.raises(NotFoundError) as info:
        await run_manager.rescan("corp-z", "cde-a", "both", None)

    assert info.value.subject == "corp-z"
    assert "cde-a, cde-b" in info.value.message


async def test_rescan_of_a_pair_no_rule_covers_is_a_usage_error(
    run_manager: RunManager, founding: Policy
) -> None:
    await run_manager.start(founding)

    with pytest.raises(UsageError, match="no policy rule covers this pair"):
        await run_manager.rescan("cde-a", "cde-b", "both", None)


async def test_rescan_without_any_full_run_is_not_found(
    run_manager: RunManager,
) -> None:
    with pytest.raises(NotFoundError, match="latest: no such run"):
        await run_manager.rescan("corp-a", "cde-a", "both", None)


async def test_find_of_an_unknown_run_is_not_found(run_manager: RunManager) -> None:
    with pytest.raises(NotFoundError, match="nope: no such run"):
        await run_manager.find("nope")


async def test_judge_sorts_pairs_and_is_pending_while_running(
    run_manager: RunManager, founding: Policy
) -> None:
    run = await run_manager.start(founding)

    judgements, verdict = await run_manager.judge(run)

    keys = [(j.src, j.dst) for j in judgements]
    assert keys == sorted(keys)
    assert verdict is Verdict.PENDING
