"""The lab's nftables rulesets, rendered as text for ``nft -f``.

The transit router enforces the spec's firewall the way a VPC firewall does:
stateful, rules in order, default drop, drops silent.  No lab router answers
anything addressed to itself, and none sends an ICMP error of its own (host
unreachable, time exceeded, redirect): the only packets a router makes are the
answers of ``reject`` rules, a TCP RST or ICMP admin-prohibited (RFC 1812 5.2.7.1).
Link loss is an nftables random drop at the ingress of every link end (``tc
netem`` would be the usual tool, but kernels like this project's lack it), so
each direction of each link loses packets independently; ARP is spared so a lost
neighbour resolution does not turn into a multi-second stall.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network

from deploy.lab.spec import Action, LabSpec, Rule
from deploy.lab.topology import COORDINATOR_PORT, MANAGEMENT_BRIDGE, SQS_PORT
from protocol.ports import PortRanges, format_ports

TABLE = "sgl-lab"
LOSS_TABLE = "sgl-loss"
# numgen draws from [0, LOSS_SCALE); a drop when the draw is below loss * scale.
LOSS_SCALE = 1_000_000

_REJECT_TCP = "reject with tcp reset"
_REJECT_OTHER = "reject with icmp type admin-prohibited"
_DROP_ALL_LOCAL = """\
  chain input {
    type filter hook input priority filter; policy drop;
  }
  chain output {
    type filter hook output priority filter; policy drop;
"""


def transit_ruleset(spec: LabSpec) -> str:
    """The transit router: the spec's firewall, then the default drop."""
    rules = "\n".join(
        line for n, rule in enumerate(spec.firewall, 1) for line in _rule(n, rule)
    )

    return (
        f"table ip {TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "    ct state established,related accept\n"
        "    ct state invalid drop\n"
        f"{rules}\n"
        "  }\n"
        f"{_DROP_ALL_LOCAL}"
        "    tcp flags & rst == rst accept\n"
        "    icmp type destination-unreachable icmp code admin-prohibited accept\n"
        "  }\n"
        "}\n"
    )


def router_ruleset() -> str:
    """A VPC router: forwards everything, answers and originates nothing."""
    return (
        f"table ip {TABLE} {{\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        "  }\n"
        f"{_DROP_ALL_LOCAL}"
        "  }\n"
        "}\n"
    )


def loss_ruleset(devices: Sequence[str], loss: float) -> str:
    """Random drop of IPv4 packets arriving on ``devices``; empty when lossless."""
    threshold = round(loss * LOSS_SCALE)
    if threshold == 0 or not devices:
        return ""
    chains = "".join(
        f"  chain in-{device} {{\n"
        f'    type filter hook ingress device "{device}" priority filter;\n'
        f"    meta protocol ip numgen random mod {LOSS_SCALE} < {threshold} drop\n"
        "  }\n"
        for device in devices
    )

    return f"table netdev {LOSS_TABLE} {{\n{chains}}}\n"


def management_ruleset() -> str:
    """The root namespace: agents reach SQS and the coordinator, nothing else."""
    bridge = f'iifname "{MANAGEMENT_BRIDGE}"'

    return (
        f"table ip {TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    {bridge} ct state established,related accept\n"
        f"    {bridge} tcp dport {{ {SQS_PORT}, {COORDINATOR_PORT} }} accept\n"
        f"    {bridge} icmp type echo-request accept\n"
        f"    {bridge} drop\n"
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        # Never route lab traffic to the machine's real interfaces (or back).
        f"    {bridge} drop\n"
        f'    oifname "{MANAGEMENT_BRIDGE}" drop\n'
        "  }\n"
        "}\n"
    )


def _rule(n: int, rule: Rule) -> Iterable[str]:
    match = f"ip saddr {_set(rule.sources)} ip daddr {_set(rule.destinations)}"
    comment = f'comment "rule {n}: {rule.source} -> {rule.destination}"'
    for protocol in _protocols(rule):
        for protocol_match, verdict in _verdicts(rule.action, protocol):
            yield f"    {match} {protocol_match}{verdict} {comment}"


def _protocols(rule: Rule) -> list[str]:
    """Match expressions with a trailing space; one empty one for every protocol."""
    if rule.tcp is None and rule.udp is None:
        return [""]
    matches = []
    if rule.tcp is not None:
        matches.append(f"tcp dport {_ports(rule.tcp)} ")
    if rule.udp is not None:
        matches.append(f"udp dport {_ports(rule.udp)} ")

    return matches


def _verdicts(action: Action, protocol: str) -> list[tuple[str, str]]:
    if action is not Action.REJECT:
        return [(protocol, str(action))]
    if protocol.startswith("tcp"):
        return [(protocol, _REJECT_TCP)]
    if protocol:
        return [(protocol, _REJECT_OTHER)]

    # Every protocol: a RST for TCP, admin-prohibited for the rest.
    return [("meta l4proto tcp ", _REJECT_TCP), ("", _REJECT_OTHER)]


def _set(networks: Sequence[IPv4Network]) -> str:
    return "{ " + ", ".join(str(network) for network in networks) + " }"


def _ports(ports: PortRanges) -> str:
    return "{ " + format_ports(ports).replace(",", ", ") + " }"
