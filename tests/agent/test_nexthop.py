"""Routes and next hops come from the kernel's own tables."""

from __future__ import annotations

from ipaddress import IPv4Address

from agent.nexthop import Route, needs_no_neighbour, resolve, routes


def test_loopback_route_needs_no_neighbour() -> None:
    found = routes([IPv4Address("127.0.0.1")])

    assert found == {
        IPv4Address("127.0.0.1"): Route("lo", IPv4Address("127.0.0.1"), None)
    }
    assert needs_no_neighbour("lo")


def test_loopback_next_hop_resolves_without_probing() -> None:
    primed: list[IPv4Address] = []

    macs = resolve(
        "lo", {IPv4Address("127.0.0.1"): IPv4Address("127.0.0.1")}, primed.append
    )

    assert macs == {IPv4Address("127.0.0.1"): bytes(6)}
    assert primed == []


def test_next_hop_is_the_gateway_when_there_is_one() -> None:
    via = Route("eth0", IPv4Address("10.0.1.4"), IPv4Address("10.0.1.1"))
    direct = Route("eth0", IPv4Address("10.0.1.4"), None)
    target = IPv4Address("10.0.2.5")

    assert via.next_hop(target) == IPv4Address("10.0.1.1")
    assert direct.next_hop(target) == target
