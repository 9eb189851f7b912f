"""The probe order: everything once per pass, shuffled, no bursts on one host."""

from __future__ import annotations

import itertools
import random

import pytest

from agent.permutation import PassOrder


def _probes(order: PassOrder, limit: int) -> list[tuple[int, int]]:
    return [
        order.probe(batch, slot)
        for batch in order.batches(limit)
        for slot in range(batch.size)
    ]


@pytest.mark.parametrize(
    ("addresses", "limit"), [(1, 64), (16, 64), (300, 128), (7, 1)]
)
def test_every_probe_is_visited_exactly_once(addresses: int, limit: int) -> None:
    ports = list(range(1, 501))
    order = PassOrder(addresses, ports, random.Random(1))

    probes = _probes(order, limit)

    assert len(probes) == addresses * len(ports)
    assert set(probes) == {(a, p) for a in range(addresses) for p in ports}
    assert all(b.size <= limit for b in order.batches(limit))


def test_consecutive_probes_go_to_different_hosts() -> None:
    probes = _probes(PassOrder(16, range(1, 2001), random.Random(2)), 1024)

    assert all(a[0] != b[0] for a, b in itertools.pairwise(probes))


def test_each_pass_has_its_own_order() -> None:
    rng = random.Random(3)

    first = _probes(PassOrder(8, range(1, 1001), rng), 256)
    second = _probes(PassOrder(8, range(1, 1001), rng), 256)

    assert first != second
    assert sorted(first) == sorted(second)
