"""Lab layout: names that fit the kernel and the sgl- prefix, addresses, routes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from deploy.lab.cli import FOUNDING_SPEC
from deploy.lab.spec import RESERVED_NETWORK, load_spec
from deploy.lab.topology import (
    MANAGEMENT_BRIDGE,
    MANAGEMENT_NETWORK,
    PREFIX,
    TRANSIT_NETWORK,
    Topology,
    plan,
)

# IFNAMSIZ is 16 with the terminating NUL.
MAX_INTERFACE_NAME = 15


@pytest.fixture(scope="module")
def founding() -> Topology:
    return plan(load_spec(FOUNDING_SPEC))


def test_every_namespace_and_root_link_starts_with_the_lab_prefix(
    founding: Topology,
) -> None:
    root_links = [MANAGEMENT_BRIDGE] + [
        node.management.root_port for node in founding.agents if node.management
    ]

    assert all(
        name.startswith(PREFIX) for name in founding.namespaces + tuple(root_links)
    )
    assert len(set(founding.namespaces)) == len(founding.namespaces) == 20


def test_interface_names_fit_the_kernel_and_are_unique(founding: Topology) -> None:
    ports = [node.port for node in founding.nodes]
    bridges = [b.name for r in founding.routers for b in r.bridges]
    transit = [r.transit_port for r in founding.routers]
    names = ports + bridges + transit

    assert all(len(name) <= MAX_INTERFACE_NAME for name in names)
    assert all(name.startswith(PREFIX) for name in names)
    assert len(set(names)) == len(names)


def test_agents_sit_at_dot_four_with_a_management_address_each(
    founding: Topology,
) -> None:
    agent = founding.agent("corp-b")

    assert agent.namespace == "sgl-agent-corp-b"
    assert agent.address == IPv4Interface("172.16.2.4/28")
    management = [n.management.address.ip for n in founding.agents if n.management]
    assert len(set(management)) == 12
    assert all(
        ip in MANAGEMENT_NETWORK and ip != IPv4Address("198.18.0.1")
        for ip in management
    )


def test_hosts_route_to_the_other_lab_subnets_only(founding: Topology) -> None:
    agent = founding.agent("cde-a")

    assert IPv4Network("10.0.1.0/28") not in agent.routes
    assert len(agent.routes) == 11
    assert IPv4Network("0.0.0.0/0") not in agent.routes


def test_workloads_have_their_own_namespace_and_no_management_leg(
    founding: Topology,
) -> None:
    workload = next(n for n in founding.workloads if n.name == "workload-10.0.6.5")

    assert workload.namespace == "sgl-host-10.0.6.5"
    assert workload.management is None
    assert (workload.tcp, workload.udp) == (((22, 22), (8443, 8443)), ((53, 53),))


def test_vpc_routers_bridge_their_subnets_and_send_the_rest_to_transit(
    founding: Topology,
) -> None:
    cde, corp = founding.router("cde"), founding.router("corp")

    assert [b.subnet.name for b in corp.bridges] == ["corp-a", "corp-b", "corp-c"]
    assert corp.bridges[1].address == IPv4Interface("172.16.2.1/28")
    assert set(corp.bridges[0].ports) == {
        founding.agent("corp-a").port,
        next(n.port for n in founding.workloads if n.name == "workload-172.16.1.5"),
    }
    assert corp.remote == tuple(IPv4Network(f"10.0.{i}.0/28") for i in range(1, 10))
    assert cde.uplink.network != corp.uplink.network
    assert all(r.uplink.network.subnet_of(TRANSIT_NETWORK) for r in founding.routers)
    assert TRANSIT_NETWORK.subnet_of(RESERVED_NETWORK)
    assert MANAGEMENT_NETWORK.subnet_of(RESERVED_NETWORK)
