"""The scope guard: an assignment is inside only if every address and port is."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.runner import expand_targets
from agent.scope import check
from protocol.messages import Assignment, Refused
from protocol.ports import PortRanges, expand, merge
from protocol.scope import Destination, Scope

PROPERTY = settings(max_examples=300, deadline=None, database=None)
BASE = int(IPv4Address("10.0.0.0"))


def _scope(*destinations: Destination, rate: int = 1000) -> Scope:
    return Scope("s.yaml", ("corp-a",), rate, destinations)


def _assignment(targets: tuple[str, ...], tcp: PortRanges, **fields: Any) -> Assignment:
    values: dict[str, Any] = {
        "id": "a",
        "run_id": "r",
        "src": "corp-a",
        "dst": "cde-a",
        "targets": targets,
        "tcp": tcp,
        "udp": (),
        "rate_pps": 1000,
        "passes": 1,
        "issued_at": 0.0,
        "expires_at": 1.0,
    }
    return Assignment(**(values | fields))


def test_ports_split_across_two_destinations_of_one_network_are_inside() -> None:
    net = IPv4Network("10.0.0.0/24")
    scope = _scope(
        Destination(net, ((1, 100),), ()), Destination(net, ((101, 200),), ())
    )

    assert check(scope, _assignment(("10.0.0.0/28",), ((50, 150),))) is None


def test_a_target_straddling_two_destinations_is_inside_when_both_allow() -> None:
    scope = _scope(
        Destination(IPv4Network("10.0.0.0/25"), ((1, 65535),), ()),
        Destination(IPv4Network("10.0.0.128/25"), ((443, 443),), ()),
    )

    inside = check(scope, _assignment(("10.0.0.0/24",), ((443, 443),)))
    outside = check(scope, _assignment(("10.0.0.0/24",), ((22, 22),)))

    assert inside is None
    assert outside is not None
    assert outside.reason == Refused.PORT
    assert outside.detail == "tcp/22 to 10.0.0.128/25 outside approved scope"


def test_a_partly_covered_target_names_the_uncovered_part() -> None:
    scope = _scope(Destination(IPv4Network("10.0.0.0/25"), ((1, 65535),), ()))

    violation = check(scope, _assignment(("10.0.0.0/24",), ((22, 22),)))

    assert violation is not None
    assert violation.reason == Refused.DESTINATION
    assert violation.detail == "destination 10.0.0.128/25 outside approved scope"


def test_a_target_that_is_not_ipv4_is_outside() -> None:
    scope = _scope(Destination(IPv4Network("0.0.0.0/0"), ((1, 65535),), ()))

    violation = check(scope, _assignment(("::1/128",), ((22, 22),)))

    assert violation is not None
    assert violation.reason == Refused.DESTINATION


# --- the guard against brute force, on small address and port spaces ----------

small_networks = st.builds(
    lambda offset, prefix: IPv4Network((BASE + offset, prefix), strict=False),
    st.integers(0, 63),
    st.integers(26, 32),
)
small_ports = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 5)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=1,
    max_size=3,
).map(merge)


def _allowed(scope: Scope, address: int, port: int) -> bool:
    return any(
        int(d.network.network_address) <= address <= int(d.network.broadcast_address)
        and any(first <= port <= last for first, last in d.tcp)
        for d in scope.destinations
    )


@PROPERTY
@given(
    st.lists(st.tuples(small_networks, small_ports), min_size=1, max_size=4),
    st.lists(small_networks, min_size=1, max_size=3),
    small_ports,
)
def test_the_guard_agrees_with_checking_every_address_and_port(
    destinations: list[tuple[IPv4Network, PortRanges]],
    targets: list[IPv4Network],
    tcp: PortRanges,
) -> None:
    scope = _scope(*(Destination(net, ports, ()) for net, ports in destinations))
    every = all(
        _allowed(scope, int(address), port)
        for target in targets
        for address in target
        for port in expand(tcp)
    )

    verdict = check(scope, _assignment(tuple(map(str, targets)), tcp))

    assert (verdict is None) == every


@PROPERTY
@given(st.lists(small_networks, min_size=1, max_size=4))
def test_expanded_targets_are_exactly_the_addresses_of_the_networks(
    targets: list[IPv4Network],
) -> None:
    addresses = expand_targets([str(t) for t in targets], exact=True)

    assert len(addresses) == len(set(addresses))
    assert set(addresses) == {a for t in targets for a in t}


def test_uncovered_addresses_of_several_targets_are_named_as_one_range() -> None:
    """The planner splits a /28's hosts into several CIDRs; the refusal joins them."""
    scope = _scope(Destination(IPv4Network("10.0.1.0/24"), ((1, 65535),), ()))
    hosts = ("10.0.99.1/32", "10.0.99.2/31", "10.0.99.4/30", "10.0.99.8/30")

    violation = check(scope, _assignment(hosts, ((22, 22),)))

    assert violation is not None
    assert violation.detail == "destination 10.0.99.1-10.0.99.11 outside approved scope"
