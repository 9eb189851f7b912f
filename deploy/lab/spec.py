"""The lab spec: subnets, listening hosts, the transit firewall and link loss.

``load_spec`` reads the YAML of DESIGN.md "Lab spec" into frozen types and checks
what the YAML shape alone cannot (addresses inside their subnets, names that
resolve, no overlaps); every error names file:line and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Any

import msgspec

from deploy.lab.errors import SpecError
from protocol.documents import Document, DocumentError, load_document
from protocol.ports import PortRanges, count, parse_ports

# RFC 2544's benchmarking range: the lab keeps it for its management network and
# the links between routers, so no spec may use it.
RESERVED_NETWORK = IPv4Network("198.18.0.0/15")
# Each agent gets one management address in 198.18.0.0/24.
MAX_SUBNETS = 240
# One socket per port; a workload is a stand-in for a server, not a port sink.
MAX_HOST_PORTS = 1000
# The router takes .1 and the agent .4, so a subnet needs at least eight addresses.
MAX_PREFIX = 29

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")
_NAME_RULE = "lowercase letters, digits, '-' and '_', at most 32 characters"

Ports = int | str | list[int | str]


class Action(StrEnum):
    """What the transit router does with a packet a firewall rule matches."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"


class _SubnetDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cidr: str
    vpc: str


class _HostDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ip: str
    tcp: Ports | None = None
    udp: Ports | None = None


class _RuleDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    from_: str = msgspec.field(name="from")
    to: str
    action: Action
    tcp: Ports | None = None
    udp: Ports | None = None


class _LabDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    # Converted entry by entry: msgspec reports a mapping value's path without
    # its key, and the error must name the subnet and its line.
    subnets: dict[str, Any]
    hosts: list[_HostDoc] = []
    firewall: list[_RuleDoc] = []
    loss: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0


@dataclass(frozen=True)
class Subnet:
    """One subnet: a bridge behind its VPC router, with the agent at .4."""

    name: str
    cidr: IPv4Network
    vpc: str

    @property
    def router_ip(self) -> IPv4Address:
        return self.cidr.network_address + 1

    @property
    def agent_ip(self) -> IPv4Address:
        return self.cidr.network_address + 4


@dataclass(frozen=True)
class Host:
    """A workload that exists in ``subnet`` and listens on ``tcp`` and ``udp``."""

    ip: IPv4Address
    subnet: str
    tcp: PortRanges
    udp: PortRanges


@dataclass(frozen=True)
class Rule:
    """One transit firewall rule; no ``tcp`` and no ``udp`` means every protocol."""

    source: str
    destination: str
    sources: tuple[IPv4Network, ...]
    destinations: tuple[IPv4Network, ...]
    action: Action
    tcp: PortRanges | None
    udp: PortRanges | None
    line: int | None


@dataclass(frozen=True)
class LabSpec:
    """A checked lab spec, ready to build."""

    path: str
    subnets: tuple[Subnet, ...]
    hosts: tuple[Host, ...]
    firewall: tuple[Rule, ...]
    loss: float

    @property
    def vpcs(self) -> tuple[str, ...]:
        """VPC names in the order the spec first names them."""
        return tuple(dict.fromkeys(subnet.vpc for subnet in self.subnets))

    def subnet(self, name: str) -> Subnet:
        """The subnet called ``name``."""
        return next(subnet for subnet in self.subnets if subnet.name == name)


def load_spec(path: str | Path) -> LabSpec:
    """Read and check a lab spec; raise ``SpecError`` naming file:line if unusable."""
    try:
        doc = load_document(path)
    except DocumentError as exc:
        raise SpecError(_where(exc), str(exc)) from exc

    return parse_spec(doc)


def parse_spec(doc: Document) -> LabSpec:
    """Check an already parsed YAML document as a lab spec."""
    try:
        return _parse(doc)
    except DocumentError as exc:
        raise SpecError(_where(exc), str(exc)) from exc


def _where(exc: DocumentError) -> str:
    return f"{exc.path}:{exc.line}" if exc.line else exc.path


def _parse(doc: Document) -> LabSpec:
    raw = doc.convert(_LabDoc)
    if raw.version != 1:
        raise doc.error(f"unsupported version {raw.version}: expected 1", "version")
    subnets = _subnets(doc, raw.subnets)
    hosts = tuple(_host(doc, i, host, subnets) for i, host in enumerate(raw.hosts))
    _check_unique_hosts(doc, hosts)
    rules = tuple(_rule(doc, i, rule, subnets) for i, rule in enumerate(raw.firewall))

    return LabSpec(doc.path, subnets, hosts, rules, raw.loss)


def _subnets(doc: Document, entries: dict[str, Any]) -> tuple[Subnet, ...]:
    if not entries:
        raise doc.error("a lab needs at least one subnet", "subnets")
    if len(entries) > MAX_SUBNETS:
        raise doc.error(f"at most {MAX_SUBNETS} subnets fit the lab", "subnets")
    subnets: list[Subnet] = []
    for name, value in entries.items():
        subnet = _subnet(doc, name, value)
        for other in subnets:
            if subnet.cidr.overlaps(other.cidr):
                raise doc.error(
                    f"subnet {name} ({subnet.cidr}) overlaps subnet "
                    f"{other.name} ({other.cidr})",
                    "subnets",
                    name,
                    "cidr",
                )
        subnets.append(subnet)
    vpcs = {subnet.vpc for subnet in subnets}
    for subnet in subnets:
        if subnet.name in vpcs:
            raise doc.error(
                f"{subnet.name!r} names both a subnet and a vpc; rules could not "
                "tell them apart",
                "subnets",
                subnet.name,
            )

    return tuple(subnets)


def _subnet(doc: Document, name: str, value: Any) -> Subnet:
    if not _NAME.fullmatch(name):
        raise doc.error(f"bad subnet name {name!r}: use {_NAME_RULE}", "subnets", name)
    try:
        entry = msgspec.convert(value, _SubnetDoc)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        field = where.rstrip("`")
        keys = ("subnets", name, field) if field else ("subnets", name)
        raise doc.error(f"subnet {name}: {_humane(message)}", *keys) from exc
    if not _NAME.fullmatch(entry.vpc):
        raise doc.error(
            f"bad vpc name {entry.vpc!r}: use {_NAME_RULE}", "subnets", name, "vpc"
        )

    return Subnet(name, _subnet_cidr(doc, name, entry.cidr), entry.vpc)


def _subnet_cidr(doc: Document, name: str, text: str) -> IPv4Network:
    keys = ("subnets", name, "cidr")
    try:
        cidr = IPv4Network(text)
    except ValueError as exc:
        raise doc.error(f"bad CIDR {text!r}: {exc}", *keys) from exc
    if cidr.prefixlen > MAX_PREFIX:
        raise doc.error(
            f"subnet {name} ({cidr}) is too small: the router takes .1 and the "
            f"agent .4, so use /{MAX_PREFIX} or larger",
            *keys,
        )
    if cidr.overlaps(RESERVED_NETWORK):
        raise doc.error(
            f"subnet {name} ({cidr}) overlaps {RESERVED_NETWORK}, which the lab "
            "keeps for its management and router links",
            *keys,
        )
    if cidr.is_loopback or cidr.is_link_local or cidr.is_multicast or cidr.is_reserved:
        raise doc.error(
            f"subnet {name} ({cidr}) is loopback, link-local, multicast or reserved",
            *keys,
        )

    return cidr


def _humane(message: str) -> str:
    message = message.replace("Object contains unknown field", "unknown field")
    message = message.replace("Object missing required field", "missing field")

    return message.replace("Expected `object`", "expected {cidr: ..., vpc: ...}")


def _host(doc: Document, i: int, raw: _HostDoc, subnets: tuple[Subnet, ...]) -> Host:
    keys = ("hosts", i, "ip")
    try:
        ip = IPv4Address(raw.ip)
    except ValueError as exc:
        raise doc.error(f"bad IP address {raw.ip!r}", *keys) from exc
    subnet = next((subnet for subnet in subnets if ip in subnet.cidr), None)
    if subnet is None:
        raise doc.error(f"host {ip} is outside every subnet", *keys)
    role = _reserved_role(subnet, ip)
    if role:
        raise doc.error(f"host {ip} is the {role} of subnet {subnet.name}", *keys)
    tcp = _ports(doc, raw.tcp, "hosts", i, "tcp") or ()
    udp = _ports(doc, raw.udp, "hosts", i, "udp") or ()
    if count(tcp) + count(udp) > MAX_HOST_PORTS:
        raise doc.error(
            f"host {ip} listens on {count(tcp) + count(udp)} ports; a lab workload "
            f"serves at most {MAX_HOST_PORTS}",
            "hosts",
            i,
        )

    return Host(ip, subnet.name, tcp, udp)


def _reserved_role(subnet: Subnet, ip: IPv4Address) -> str | None:
    roles = {
        subnet.cidr.network_address: "network address",
        subnet.cidr.broadcast_address: "broadcast address",
        subnet.router_ip: "router",
        subnet.agent_ip: "agent",
    }

    return roles.get(ip)


def _check_unique_hosts(doc: Document, hosts: tuple[Host, ...]) -> None:
    seen: set[IPv4Address] = set()
    for i, host in enumerate(hosts):
        if host.ip in seen:
            raise doc.error(f"host {host.ip} is listed twice", "hosts", i, "ip")
        seen.add(host.ip)


def _ports(doc: Document, value: Ports | None, *keys: str | int) -> PortRanges | None:
    if value is None:
        return None
    try:
        return parse_ports(value)
    except ValueError as exc:
        raise doc.error(f"bad {keys[-1]} ports: {exc}", *keys) from exc


def _rule(doc: Document, i: int, raw: _RuleDoc, subnets: tuple[Subnet, ...]) -> Rule:
    sources = _endpoint(doc, raw.from_, subnets, "firewall", i, "from")
    destinations = _endpoint(doc, raw.to, subnets, "firewall", i, "to")
    source_vpcs = _vpcs_touched(sources, subnets)
    if source_vpcs == _vpcs_touched(destinations, subnets) and len(source_vpcs) == 1:
        raise doc.error(
            f"rule never applies: traffic inside vpc {source_vpcs.pop()} flows "
            "through its VPC router unfiltered",
            "firewall",
            i,
        )
    tcp = _ports(doc, raw.tcp, "firewall", i, "tcp")
    udp = _ports(doc, raw.udp, "firewall", i, "udp")

    line = doc.line("firewall", i)

    return Rule(raw.from_, raw.to, sources, destinations, raw.action, tcp, udp, line)


def _endpoint(
    doc: Document, text: str, subnets: tuple[Subnet, ...], *keys: str | int
) -> tuple[IPv4Network, ...]:
    by_name = [subnet.cidr for subnet in subnets if subnet.name == text]
    by_vpc = [subnet.cidr for subnet in subnets if subnet.vpc == text]
    if by_name or by_vpc:
        return tuple(by_name or by_vpc)
    try:
        network = IPv4Network(text)
    except ValueError as exc:
        raise doc.error(
            f"{text!r} is no subnet, vpc or CIDR of this lab ({exc})", *keys
        ) from exc
    if not any(network.overlaps(subnet.cidr) for subnet in subnets):
        raise doc.error(f"{network} matches no subnet of the lab", *keys)

    return (network,)


def _vpcs_touched(
    networks: tuple[IPv4Network, ...], subnets: tuple[Subnet, ...]
) -> set[str]:
    return {
        subnet.vpc
        for subnet in subnets
        for network in networks
        if network.overlaps(subnet.cidr)
    }
