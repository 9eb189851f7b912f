"""Builds a lab's network on this machine, and finds and removes what is left of one.

Building runs ``ip``, ``sysctl`` and ``nft`` in batches: one ``ip -batch`` per
namespace keeps a twenty-namespace lab to about a second.  Removal works from
names alone (the ``sgl-`` prefix), so it also cleans up after a crash.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import structlog

from deploy.lab import firewall
from deploy.lab.errors import LabStateError, NetworkError
from deploy.lab.spec import RESERVED_NETWORK
from deploy.lab.topology import (
    DATA_INTERFACE,
    MANAGEMENT_BRIDGE,
    MANAGEMENT_INTERFACE,
    MANAGEMENT_IP,
    MANAGEMENT_NETWORK,
    PREFIX,
    TRANSIT_NAMESPACE,
    UPLINK_INTERFACE,
    Node,
    Router,
    Topology,
)

COMMAND_TIMEOUT_S = 30.0
# A router gives up on an absent host after 3 ARP probes this far apart, instead
# of holding packets for 3 s; its ICMP host-unreachable is dropped either way.
ARP_RETRANS_MS = 250

_EVERY_NAMESPACE = (
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
)
_ROUTERS = (
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.send_redirects=0",
    "net.ipv4.conf.default.send_redirects=0",
    # Routers terminate no connections: looking for a local socket on every
    # forwarded packet is wasted work at scan rates.
    "net.ipv4.ip_early_demux=0",
)
# The transit firewall is stateful, so every probe it lets through opens a
# conntrack entry.  With the kernel's defaults an unanswered SYN holds its
# entry for two minutes, and a full-port scan fills the table (the kernel then
# drops new connections: loss the lab must not invent).  The table holds
# 262,144 entries unless the host says otherwise, and a namespace may not
# raise it; at 100,000 accepted probes a second an unanswered SYN can keep its
# entry for one second at most.  Probes are answered within milliseconds or
# never; established connections keep the default.
_TRANSIT_CONNTRACK = (
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent=1",
    "net.netfilter.nf_conntrack_tcp_timeout_syn_recv=1",
    "net.netfilter.nf_conntrack_tcp_timeout_close=1",
    "net.netfilter.nf_conntrack_udp_timeout=3",
    "net.netfilter.nf_conntrack_icmp_timeout=3",
)
# Where br_netfilter is loaded, it passes bridged frames through the IP
# hooks as well; the VPC routers' bridges need no filtering.
_BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-arptables")

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Leftovers:
    """What exists on this machine that a lab made."""

    namespaces: tuple[str, ...]
    links: tuple[str, ...]
    tables: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.links or self.tables)

    def names(self) -> list[str]:
        return [*self.namespaces, *self.links, *self.tables]


def build(topology: Topology) -> None:
    """Create the lab's namespaces, links, addresses, routes and rulesets.

    On failure everything made so far is removed before the error propagates.
    """
    try:
        _create_namespaces(topology)
        _create_links(topology)
        _configure_management(topology)
        for router in topology.routers:
            _configure_router(router, topology.spec.loss)
        _configure_transit(topology)
        for node in topology.nodes:
            _configure_node(node, topology.spec.loss)
    except NetworkError:
        remove(find_leftovers())
        raise


def check_free() -> None:
    """Raise ``LabStateError`` if the lab's address range is in use elsewhere."""
    for line in _run(["ip", "-o", "-4", "addr", "show"]).splitlines():
        fields = line.split()
        device, address = fields[1], IPv4Network(fields[3], strict=False)
        if address.overlaps(RESERVED_NETWORK) and not device.startswith(PREFIX):
            raise LabStateError(
                device,
                f"{address} on {device} overlaps {RESERVED_NETWORK}, which the lab "
                "needs for its management network",
            )


def find_leftovers() -> Leftovers:
    """Every namespace, root link and root nftables table named like the lab's."""
    listed = _run(["ip", "netns", "list"]).splitlines()
    namespaces = [line.split()[0] for line in listed]
    links = [
        line.split(": ")[1].split("@")[0]
        for line in _run(["ip", "-o", "link", "show"]).splitlines()
    ]
    tables = [
        line.split()[-1] for line in _run(["nft", "list", "tables", "ip"]).splitlines()
    ]

    return Leftovers(_ours(namespaces), _ours(links), _ours(tables))


def namespace_pids(namespace: str) -> list[int]:
    """The processes running inside ``namespace``."""
    return [int(pid) for pid in _run(["ip", "netns", "pids", namespace]).split()]


def remove(leftovers: Leftovers) -> None:
    """Delete root links and tables, then namespaces (and the links inside them)."""
    for link in leftovers.links:
        # Deleting one end of a veth deletes its peer, which may be listed too.
        _run(["ip", "link", "del", link], missing_ok=True)
    for table in leftovers.tables:
        _run(["nft", "delete", "table", "ip", table], missing_ok=True)
    for namespace in leftovers.namespaces:
        _run(["ip", "netns", "del", namespace], missing_ok=True)


def _ours(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(name for name in names if name.startswith(PREFIX)))


def _create_namespaces(topology: Topology) -> None:
    _batch(None, [f"netns add {namespace}" for namespace in topology.namespaces])
    for namespace in topology.namespaces:
        is_router = namespace == TRANSIT_NAMESPACE or any(
            router.namespace == namespace for router in topology.routers
        )
        _sysctl(namespace, (*_EVERY_NAMESPACE, *(_ROUTERS if is_router else ())))


def _create_links(topology: Topology) -> None:
    commands = [f"link add {MANAGEMENT_BRIDGE} type bridge"]
    for router in topology.routers:
        commands.append(
            f"link add {router.transit_port} netns {TRANSIT_NAMESPACE} type veth "
            f"peer name {UPLINK_INTERFACE} netns {router.namespace}"
        )
    for node in topology.nodes:
        router = topology.router(node.subnet.vpc)
        commands.append(
            f"link add {node.port} netns {router.namespace} type veth "
            f"peer name {DATA_INTERFACE} netns {node.namespace}"
        )
        if node.management is not None:
            commands.append(
                f"link add {node.management.root_port} type veth "
                f"peer name {MANAGEMENT_INTERFACE} netns {node.namespace}"
            )
    _batch(None, commands)


def _configure_management(topology: Topology) -> None:
    root_links = [MANAGEMENT_BRIDGE]
    commands = []
    for node in topology.nodes:
        if node.management is None:
            continue
        port = node.management.root_port
        root_links.append(port)
        commands += [
            f"link set {port} master {MANAGEMENT_BRIDGE}",
            # Agents reach the root namespace, never each other.
            f"link set {port} type bridge_slave isolated on",
            f"link set {port} up",
        ]
    for link in root_links:
        _root_sysctl(f"net/ipv6/conf/{link}/disable_ipv6", "1")
    address = f"{MANAGEMENT_IP}/{MANAGEMENT_NETWORK.prefixlen}"
    commands += [
        f"addr add {address} dev {MANAGEMENT_BRIDGE}",
        f"link set {MANAGEMENT_BRIDGE} up",
    ]
    _batch(None, commands)
    _nft(None, firewall.management_ruleset())


def _configure_router(router: Router, loss_rate: float) -> None:
    commands = ["link set lo up"]
    for bridge in router.bridges:
        commands += [
            f"link add {bridge.name} type bridge",
            f"addr add {bridge.address} dev {bridge.name}",
            f"link set {bridge.name} up",
        ]
        for port in bridge.ports:
            commands += [f"link set {port} master {bridge.name}", f"link set {port} up"]
    commands += [
        f"addr add {router.uplink} dev {UPLINK_INTERFACE}",
        f"link set {UPLINK_INTERFACE} up",
        *(f"route add {net} via {router.transit_ip}" for net in router.remote),
    ]
    _batch(router.namespace, commands)
    loss = firewall.loss_ruleset(_loss_devices(router), loss_rate)
    retrans = [
        f"net.ipv4.neigh.{bridge.name}.retrans_time_ms={ARP_RETRANS_MS}"
        for bridge in router.bridges
    ]
    _sysctl(router.namespace, [*retrans, *_bridge_nf_off()])
    _nft(router.namespace, firewall.router_ruleset() + loss)


def _configure_transit(topology: Topology) -> None:
    commands = ["link set lo up"]
    for router in topology.routers:
        transit_address = f"{router.transit_ip}/{router.uplink.network.prefixlen}"
        commands += [
            f"addr add {transit_address} dev {router.transit_port}",
            f"link set {router.transit_port} up",
            *(
                f"route add {bridge.subnet.cidr} via {router.uplink.ip}"
                for bridge in router.bridges
            ),
        ]
    _batch(TRANSIT_NAMESPACE, commands)
    ports = [router.transit_port for router in topology.routers]
    _nft(
        TRANSIT_NAMESPACE,
        firewall.transit_ruleset(topology.spec)
        + firewall.loss_ruleset(ports, topology.spec.loss),
    )
    # After the ruleset: its ct rules load conntrack, which brings these keys.
    _sysctl(TRANSIT_NAMESPACE, _TRANSIT_CONNTRACK)


def _configure_node(node: Node, loss: float) -> None:
    commands = [
        "link set lo up",
        f"addr add {node.address} dev {DATA_INTERFACE}",
        f"link set {DATA_INTERFACE} up",
        *(f"route add {net} via {node.subnet.router_ip}" for net in node.routes),
    ]
    if node.management is not None:
        commands += [
            f"addr add {node.management.address} dev {MANAGEMENT_INTERFACE}",
            f"link set {MANAGEMENT_INTERFACE} up",
        ]
    _batch(node.namespace, commands)
    _nft(node.namespace, firewall.loss_ruleset([DATA_INTERFACE], loss))


def _loss_devices(router: Router) -> list[str]:
    return [UPLINK_INTERFACE, *(port for b in router.bridges for port in b.ports)]


def _batch(namespace: str | None, commands: Sequence[str]) -> None:
    where = ["-n", namespace] if namespace else []
    try:
        _run(["ip", *where, "-batch", "-"], stdin="\n".join(commands) + "\n")
    except NetworkError as exc:
        # ip names the failing line as "-:N"; name the command instead.
        found = re.search(r"-:(\d+)", exc.message)
        if found is None:
            raise
        command = " ".join(["ip", *where, commands[int(found[1]) - 1]])
        reason = exc.message.partition(": ")[2].split(" / ")[0]
        raise NetworkError(command, f"`{command}` failed: {reason}") from exc


def _root_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise NetworkError(str(path), f"cannot set {path}: {exc.strerror}") from exc


def _bridge_nf_off() -> list[str]:
    """Settings that stop br_netfilter in a namespace, if it is loaded at all
    (its keys then exist in every namespace, the root one included)."""
    return [
        f"net.bridge.{key}=0"
        for key in _BRIDGE_NF
        if (Path("/proc/sys/net/bridge") / key).exists()
    ]


def _sysctl(namespace: str, settings: Sequence[str]) -> None:
    if settings:
        _run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", *settings])


def _nft(namespace: str | None, ruleset: str) -> None:
    if not ruleset:
        return
    where = ["ip", "netns", "exec", namespace] if namespace else []
    _run([*where, "nft", "-f", "-"], stdin=ruleset)


def _run(argv: Sequence[str], stdin: str = "", missing_ok: bool = False) -> str:
    command = " ".join(argv)
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(command, f"`{command}` failed: {exc}") from exc
    if done.returncode != 0:
        if missing_ok and _is_missing(done.stderr):
            return ""
        detail = " / ".join(done.stderr.split("\n")).strip(" /")
        raise NetworkError(command, f"`{command}` failed: {detail or done.returncode}")

    return done.stdout


def _is_missing(stderr: str) -> bool:
    markers = ("Cannot find device", "No such file or directory", "does not exist")
    return any(marker in stderr for marker in markers)
