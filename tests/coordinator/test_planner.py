"""Planning: pairs into chunks of bounded size, chunks into fresh assignments."""

from __future__ import annotations

import time
import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator import planner
from coordinator.errors import PolicyError
from coordinator.policy import Policy, load_policy, parse_policy
from protocol.messages import ScanKind
from protocol.ports import count

PROPERTY = settings(max_examples=60, deadline=None, database=None)


def _policy(dst: str, scan: str = "tcp: [22, 80, 443]") -> Policy:
    return parse_policy(
        "version: 1\nsegments:\n"
        "  corp: {subnets: {corp-a: 172.16.1.0/24}}\n"
        f"  cde: {{subnets: {{cde-a: {dst}}}}}\n"
        "rules: [{from: corp, to: cde, expect: closed}]\n"
        f"scan: {{{scan}}}\n"
    )


def _covered(chunks: list[planner.Chunk]) -> list[int]:
    return [a for c in chunks for a in range(int(c.first), int(c.last) + 1)]


def test_the_founding_policy_plans_one_chunk_per_pair(founding_policy: Path) -> None:
    policy = load_policy(founding_policy)

    chunks = planner.plan(policy)

    assert len(chunks) == 54
    assert {(c.pair.src, c.pair.dst) for c in chunks} == {
        (p.src, p.dst) for p in policy.pairs
    }
    assert all(c.addresses == 14 for c in chunks)
    assert all(c.probes == 14 * (65_535 + 4) for c in chunks)


def test_chunks_cover_exactly_the_host_addresses_of_the_destination() -> None:
    """Network and broadcast addresses are left out; no host twice or missed."""
    policy = _policy("10.0.0.0/22", "tcp: [22, 80, 443], chunk_probes: 1000")

    chunks = planner.plan(policy)

    hosts = [int(h) for h in IPv4Network("10.0.0.0/22").hosts()]
    assert _covered(chunks) == hosts
    assert len(chunks) > 1


def test_a_chunk_holds_at_most_chunk_probes_probes() -> None:
    policy = _policy("10.0.0.0/22", "tcp: [22, 80, 443], chunk_probes: 1000")

    chunks = planner.plan(policy)

    assert max(c.probes for c in chunks) <= 1000
    assert max(c.addresses for c in chunks) == 256


def test_chunk_targets_are_the_fewest_cidrs_for_the_block() -> None:
    chunk = planner.plan(_policy("10.0.0.0/24"))[0]

    assert chunk.targets == (
        "10.0.0.1/32",
        "10.0.0.2/31",
        "10.0.0.4/30",
        "10.0.0.8/29",
        "10.0.0.16/28",
        "10.0.0.32/27",
        "10.0.0.64/26",
        "10.0.0.128/26",
        "10.0.0.192/27",
        "10.0.0.224/28",
        "10.0.0.240/29",
        "10.0.0.248/30",
        "10.0.0.252/31",
        "10.0.0.254/32",
    )


def test_no_chunk_exceeds_chunk_probes_even_with_every_tcp_port() -> None:
    """Refusing such a policy is as good a fix as splitting the ports."""
    try:
        chunks = planner.plan(
            _policy("10.0.0.0/28", "tcp: 1-65535, chunk_probes: 1000")
        )
    except PolicyError:
        chunks = []

    assert all(c.probes <= 1000 for c in chunks)


@pytest.mark.parametrize(
    ("dst", "first", "last"),
    [
        ("10.0.0.4/31", "10.0.0.4", "10.0.0.5"),
        ("10.0.0.9/32", "10.0.0.9", "10.0.0.9"),
        ("10.0.0.8/30", "10.0.0.9", "10.0.0.10"),
    ],
)
def test_point_to_point_and_host_destinations_keep_every_address(
    dst: str, first: str, last: str
) -> None:
    """RFC 3021: a /31 has no network or broadcast address; a /32 is one host."""
    chunks = planner.plan(_policy(dst))

    assert [(c.first, c.last) for c in chunks] == [
        (IPv4Address(first), IPv4Address(last))
    ]


def test_plan_only_the_pairs_asked_for(founding_policy: Path) -> None:
    policy = load_policy(founding_policy)
    wanted = policy.pairs[:2]

    chunks = planner.plan(policy, wanted)

    assert [c.pair for c in chunks] == list(wanted)


def test_every_assignment_gets_a_fresh_id() -> None:
    policy = _policy("10.0.0.0/22", "tcp: [22, 80, 443], chunk_probes: 1000")
    chunks = planner.plan(policy)

    first = [planner.to_assignment(c, "run-1", policy, 100.0) for c in chunks]
    again = [planner.to_assignment(c, "run-1", policy, 100.0) for c in chunks]

    ids = [a.id for a in first + again]
    assert len(set(ids)) == len(ids)


def test_assignment_ids_are_uuid7_and_ascend_in_plan_order() -> None:
    """Ascending ids are appended to the store's indexes, not scattered."""
    policy = _policy("10.0.0.0/22", "tcp: [22, 80, 443], chunk_probes: 1000")
    before_ms = time.time_ns() // 1_000_000

    ids = [planner.to_assignment(c, "r", policy, 1.0).id for c in planner.plan(policy)]

    parsed = [uuid.UUID(i) for i in ids]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(len(i) == 32 for i in ids)
    assert before_ms <= parsed[0].int >> 80 <= time.time_ns() // 1_000_000


def test_an_assignment_carries_the_chunk_and_expires_after_issue() -> None:
    policy = _policy("10.0.0.0/28", "tcp: 1-1024, udp: [53], rate: 500, engine: syn")
    chunk = planner.plan(policy)[0]

    assignment = planner.to_assignment(chunk, "run-1", policy, 1000.0)

    assert assignment.issued_at == 1000.0
    assert assignment.expires_at == 1000.0 + planner.ASSIGNMENT_TTL_S
    assert assignment.expires_at > assignment.issued_at
    assert (assignment.src, assignment.dst, assignment.run_id) == (
        "corp-a",
        "cde-a",
        "run-1",
    )
    assert assignment.targets == chunk.targets
    assert (assignment.tcp, assignment.udp) == (((1, 1024),), ((53, 53),))
    assert (assignment.rate_pps, assignment.passes) == (500, 2)
    assert assignment.kind is ScanKind.SYN


def test_estimate_is_the_busiest_source_over_the_rate(founding_policy: Path) -> None:
    policy = load_policy(founding_policy)
    chunks = planner.plan(policy)

    estimate = planner.estimate_s(chunks, policy)

    # corp-a sends to 9 cde subnets; every cde subnet sends to 3 corp ones.
    assert estimate == pytest.approx(9 * 14 * 65_539 * 2 / 150_000)


def test_estimate_of_no_chunks_is_zero(founding_policy: Path) -> None:
    assert planner.estimate_s([], load_policy(founding_policy)) == 0


@PROPERTY
@given(
    prefix=st.integers(min_value=20, max_value=32),
    chunk_probes=st.integers(min_value=1000, max_value=50_000),
    ports=st.integers(min_value=1, max_value=1000),
)
def test_chunks_partition_the_hosts_within_the_probe_bound(
    prefix: int, chunk_probes: int, ports: int
) -> None:
    dst = IPv4Network(f"10.8.0.0/{prefix}")
    policy = _policy(str(dst), f"tcp: 1-{ports}, chunk_probes: {chunk_probes}")

    chunks = planner.plan(policy)

    expected = range(int(dst[0]), int(dst[-1]) + 1)
    if prefix < 31:
        expected = range(int(dst[1]), int(dst[-2]) + 1)
    assert _covered(chunks) == list(expected)
    assert all(c.probes <= chunk_probes for c in chunks)
    assert all(c.probes == c.addresses * count(c.tcp) for c in chunks)
