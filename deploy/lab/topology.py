"""Where each part of a lab lives: namespaces, interface names, addresses, routes.

Computed from a ``LabSpec`` without touching the machine.  Every namespace, link
and bridge starts with ``sgl-`` so leftovers can be found after a crash:

    sgl-agent-<subnet>, sgl-host-<ip>   one namespace per host; ``sgl-data`` is
                                        a veth into its subnet's bridge
    sgl-vpc-<vpc>                       the VPC router: bridge ``sgl-br<i>`` (.1)
                                        per subnet, ``sgl-transit`` uplink
    sgl-transit                         the transit router, ``sgl-v<k>`` per VPC
    root namespace                      bridge ``sgl-mgmtbr`` (198.18.0.1/24);
                                        each agent's ``sgl-mgmt`` joins it
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from deploy.lab.spec import Host, LabSpec, Subnet
from protocol.ports import PortRanges

PREFIX = "sgl-"
TRANSIT_NAMESPACE = "sgl-transit"
MANAGEMENT_BRIDGE = "sgl-mgmtbr"
MANAGEMENT_NETWORK = IPv4Network("198.18.0.0/24")
MANAGEMENT_IP = IPv4Address("198.18.0.1")
# Router-to-router links take /30s from the second half of RFC 2544's range.
TRANSIT_NETWORK = IPv4Network("198.19.0.0/16")
SQS_PORT = 5000
COORDINATOR_PORT = 8470
DATA_INTERFACE = "sgl-data"
MANAGEMENT_INTERFACE = "sgl-mgmt"
UPLINK_INTERFACE = "sgl-transit"
# Agents take management addresses from .10 on; .1 is the root namespace.
_FIRST_AGENT_HOST = 10


@dataclass(frozen=True)
class Management:
    """An agent's leg on the management network."""

    address: IPv4Interface
    root_port: str


@dataclass(frozen=True)
class Node:
    """A host namespace: the agent of a subnet, or a workload from ``hosts:``."""

    name: str
    namespace: str
    subnet: Subnet
    address: IPv4Interface
    port: str
    routes: tuple[IPv4Network, ...]
    management: Management | None
    tcp: PortRanges = ()
    udp: PortRanges = ()


@dataclass(frozen=True)
class Bridge:
    """A subnet's L2 segment inside its VPC router, with the router at .1."""

    name: str
    subnet: Subnet
    address: IPv4Interface
    ports: tuple[str, ...]


@dataclass(frozen=True)
class Router:
    """A VPC router: bridges for its subnets and an uplink to the transit router."""

    vpc: str
    namespace: str
    bridges: tuple[Bridge, ...]
    uplink: IPv4Interface
    transit_ip: IPv4Address
    transit_port: str
    remote: tuple[IPv4Network, ...]


@dataclass(frozen=True)
class Topology:
    """Every namespace, link and address of one lab."""

    spec: LabSpec
    routers: tuple[Router, ...]
    nodes: tuple[Node, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        routers = tuple(router.namespace for router in self.routers)
        return (TRANSIT_NAMESPACE, *routers, *(node.namespace for node in self.nodes))

    @property
    def agents(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.management is not None)

    @property
    def workloads(self) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.management is None)

    def agent(self, subnet: str) -> Node:
        """The agent node of ``subnet``."""
        return next(node for node in self.agents if node.subnet.name == subnet)

    def router(self, vpc: str) -> Router:
        """The router of ``vpc``."""
        return next(router for router in self.routers if router.vpc == vpc)


def plan(spec: LabSpec) -> Topology:
    """Lay out ``spec``: names and addresses for every part of the lab."""
    agents = [_agent(spec, i, subnet) for i, subnet in enumerate(spec.subnets)]
    workloads = [
        _workload(spec, len(agents) + j, host) for j, host in enumerate(spec.hosts)
    ]
    nodes = (*agents, *workloads)
    routers = tuple(_router(spec, k, vpc, nodes) for k, vpc in enumerate(spec.vpcs))

    return Topology(spec, routers, nodes)


def agent_name(subnet: str) -> str:
    """The name of the agent of ``subnet``, as a node and as a process."""
    return f"agent-{subnet}"


def workload_name(ip: str) -> str:
    """The name of the workload at ``ip``, as a node and as a process."""
    return f"workload-{ip}"


def _router(spec: LabSpec, k: int, vpc: str, nodes: tuple[Node, ...]) -> Router:
    link = IPv4Network((int(TRANSIT_NETWORK.network_address) + 4 * k, 30))
    bridges = tuple(
        Bridge(
            name=f"sgl-br{i}",
            subnet=subnet,
            address=IPv4Interface((subnet.router_ip, _prefix(subnet))),
            ports=tuple(node.port for node in nodes if node.subnet == subnet),
        )
        for i, subnet in enumerate(spec.subnets)
        if subnet.vpc == vpc
    )
    remote = tuple(subnet.cidr for subnet in spec.subnets if subnet.vpc != vpc)

    return Router(
        vpc=vpc,
        namespace=f"{PREFIX}vpc-{vpc}",
        bridges=bridges,
        uplink=IPv4Interface((link.network_address + 2, 30)),
        transit_ip=link.network_address + 1,
        transit_port=f"sgl-v{k}",
        remote=remote,
    )


def _agent(spec: LabSpec, i: int, subnet: Subnet) -> Node:
    address = MANAGEMENT_NETWORK.network_address + _FIRST_AGENT_HOST + i
    management = Management(
        IPv4Interface((address, MANAGEMENT_NETWORK.prefixlen)), f"sgl-m{i}"
    )

    return Node(
        name=agent_name(subnet.name),
        namespace=f"{PREFIX}agent-{subnet.name}",
        subnet=subnet,
        address=IPv4Interface((subnet.agent_ip, _prefix(subnet))),
        port=f"sgl-p{i}",
        routes=_other_subnets(spec, subnet),
        management=management,
    )


def _workload(spec: LabSpec, j: int, host: Host) -> Node:
    subnet = spec.subnet(host.subnet)

    return Node(
        name=workload_name(str(host.ip)),
        namespace=f"{PREFIX}host-{host.ip}",
        subnet=subnet,
        address=IPv4Interface((host.ip, _prefix(subnet))),
        port=f"sgl-p{j}",
        routes=_other_subnets(spec, subnet),
        management=None,
        tcp=host.tcp,
        udp=host.udp,
    )


def _prefix(subnet: Subnet) -> int:
    return subnet.cidr.prefixlen


def _other_subnets(spec: LabSpec, subnet: Subnet) -> tuple[IPv4Network, ...]:
    # Routes to the lab's subnets only, never a default route: a host cannot
    # address anything outside the lab.
    return tuple(other.cidr for other in spec.subnets if other != subnet)
