"""Rate budgets per destination: shares, which chunks fit, run time estimates."""

from __future__ import annotations

from pathlib import Path

from coordinator import budget, planner
from coordinator.budget import Candidate
from coordinator.policy import load_policy
from protocol.messages import Assignment


def _assignment(chunk: str, src: str, dst: str, rate_pps: int = 900) -> Assignment:
    return Assignment(
        id=chunk,
        run_id="run-1",
        src=src,
        dst=dst,
        targets=("10.0.1.0/28",),
        tcp=((22, 22),),
        udp=(),
        rate_pps=rate_pps,
        passes=1,
        issued_at=0.0,
        expires_at=3600.0,
    )


def test_each_source_of_a_destination_gets_an_equal_share() -> None:
    """Nine sources into one subnet share its budget; one source has it all."""
    nine = [_assignment(f"c{i}", f"corp-{i}", "cde-a") for i in range(9)]
    alone = [_assignment("x", "corp-0", "cde-b")]

    shares = budget.shares([*nine, *alone])

    assert {shares[a.id] for a in nine} == {budget.Share(900, 100)}
    assert shares["x"] == budget.Share(900, 900)
    assert sum(shares[a.id].rate_pps for a in nine) <= 900


def test_shares_stop_shrinking_at_the_slot_cap() -> None:
    many = [_assignment(f"c{i}", f"s{i}", "cde-a", 1600) for i in range(100)]

    shares = budget.shares(many)

    assert {s.rate_pps for s in shares.values()} == {1600 // budget.MAX_SLOTS}


def test_only_what_fits_the_budget_is_chosen_in_order() -> None:
    candidates = [Candidate(f"c{i}", "cde-a", 900, 300) for i in range(5)]
    candidates.append(Candidate("other", "cde-b", 900, 900))

    chosen = budget.choose(candidates, {"cde-a": 300})

    assert [c.id for c in chosen] == ["c0", "c1", "other"]


def test_a_full_destination_takes_nothing_more() -> None:
    chosen = budget.choose([Candidate("c", "cde-a", 900, 100)], {"cde-a": 900})

    assert chosen == []


def test_the_estimate_covers_the_busiest_destination_at_its_budget(
    founding_policy: Path,
) -> None:
    """corp-a receives from nine cde subnets: at least their probes over the rate."""
    policy = load_policy(founding_policy)
    chunks = planner.plan(policy)
    into_corp_a = sum(c.probes for c in chunks if c.pair.dst == "corp-a")

    estimate = budget.estimate_s(chunks, policy)

    assert estimate >= into_corp_a * policy.scan.passes / policy.scan.rate_pps
    assert estimate >= planner.estimate_s(chunks, policy)
