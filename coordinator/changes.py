"""Which subnet pairs a change to the network's controls can affect.

PCI DSS 11.4.5 asks for a segmentation test after every change to the
segmentation controls.  A CloudTrail event, as EventBridge delivers it, that
changes a security group, a network ACL, a route table or a transit gateway
route table is mapped through the deployment's network map to the policy's
directed pairs whose traffic it can touch.

Design note.  A security group is stateful and follows its instances, so a
change touches every pair with one end in the group's subnets.  A network ACL
entry or a route for destination X, on a control of subnets S, touches the
pairs from S towards X and from X towards S (probes one way, replies the
other); without a destination (a deleted ACL entry, a prefix list, IPv6) it
touches every pair with an end in S.  Whatever the map cannot explain (an
unknown id, an association named only by its id) widens to every pair: a
rescan too many costs minutes, one too few costs the assessment.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import msgspec

from coordinator.errors import CoordinatorError, UsageError
from coordinator.policy import Pair, Policy
from protocol.documents import Document, DocumentError, parse_document

CLOUDTRAIL_DETAIL_TYPE = "AWS API Call via CloudTrail"

SECURITY_GROUP_EVENTS = frozenset(
    {
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "ModifySecurityGroupRules",
    }
)
NETWORK_ACL_EVENTS = frozenset(
    {"CreateNetworkAclEntry", "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry"}
)
ROUTE_EVENTS = frozenset({"CreateRoute", "ReplaceRoute", "DeleteRoute"})
TRANSIT_GATEWAY_ROUTE_EVENTS = frozenset(
    {
        "CreateTransitGatewayRoute",
        "ReplaceTransitGatewayRoute",
        "DeleteTransitGatewayRoute",
        "EnableTransitGatewayRouteTablePropagation",
        "DisableTransitGatewayRouteTablePropagation",
    }
)
# These name an association id, not the subnet or attachment it moves.
ASSOCIATION_EVENTS = frozenset(
    {
        "AssociateRouteTable",
        "ReplaceRouteTableAssociation",
        "DisassociateRouteTable",
        "ReplaceNetworkAclAssociation",
        "AssociateTransitGatewayRouteTable",
        "DisassociateTransitGatewayRouteTable",
        "ModifyNetworkInterfaceAttribute",  # moves an interface between groups
    }
)
WATCHED_EVENTS = (
    SECURITY_GROUP_EVENTS
    | NETWORK_ACL_EVENTS
    | ROUTE_EVENTS
    | TRANSIT_GATEWAY_ROUTE_EVENTS
    | ASSOCIATION_EVENTS
)
"""Every CloudTrail event name the deployment's change rule forwards."""

_ID_PATTERNS = {
    "subnets": re.compile(r"subnet-[0-9a-f]{8,17}"),
    "security_groups": re.compile(r"sg-[0-9a-f]{8,17}"),
    "network_acls": re.compile(r"acl-[0-9a-f]{8,17}"),
    "route_tables": re.compile(r"rtb-[0-9a-f]{8,17}"),
    "transit_gateway_route_tables": re.compile(r"tgw-rtb-[0-9a-f]{8,17}"),
}


class NetworkMapError(CoordinatorError):
    """A network map that cannot be used; the subject is ``file:line``."""


class _NetworkMapDoc(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    subnets: dict[str, str]
    security_groups: dict[str, list[str]] = msgspec.field(default_factory=dict)
    network_acls: dict[str, list[str]] = msgspec.field(default_factory=dict)
    route_tables: dict[str, list[str]] = msgspec.field(default_factory=dict)
    transit_gateway_route_tables: dict[str, list[str]] = msgspec.field(
        default_factory=dict
    )


@dataclass(frozen=True)
class NetworkMap:
    """AWS resource ids and the policy subnets each belongs to or governs."""

    source: str
    subnets: dict[str, str]  # AWS subnet id -> policy subnet
    controls: dict[str, frozenset[str]]  # sg-/acl-/rtb-/tgw-rtb- id -> subnets


@dataclass(frozen=True)
class Impact:
    """The pairs to rescan after one change, and why those."""

    event: str
    resource: str | None  # the control the event names, when it names one
    pairs: tuple[Pair, ...]
    reason: str


def load_network_map(path: str | Path, policy: Policy) -> NetworkMap:
    """Read a network map and check it against ``policy``.

    Raises ``NetworkMapError`` naming file and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise NetworkMapError(str(path), f"cannot read: {exc.strerror}") from exc

    return parse_network_map(text, policy, str(path))


def parse_network_map(
    text: str, policy: Policy, source: str = "<network map>"
) -> NetworkMap:
    """Validate network map text against ``policy``; errors name file and line."""
    try:
        doc = parse_document(text, source)
        raw = doc.convert(_NetworkMapDoc)
        if raw.version != 1:
            raise doc.error(f"unsupported network map version {raw.version}")
        _check(doc, raw, policy)
    except DocumentError as exc:
        where = f"{exc.path}:{exc.line}" if exc.line else exc.path
        raise NetworkMapError(where, exc.message) from exc
    controls = {
        resource: frozenset(names)
        for section in (
            raw.security_groups,
            raw.network_acls,
            raw.route_tables,
            raw.transit_gateway_route_tables,
        )
        for resource, names in section.items()
    }

    return NetworkMap(source, dict(raw.subnets), controls)


def _check(doc: Document, raw: _NetworkMapDoc, policy: Policy) -> None:
    sections: dict[str, Mapping[str, str | list[str]]] = {
        "subnets": raw.subnets,
        "security_groups": raw.security_groups,
        "network_acls": raw.network_acls,
        "route_tables": raw.route_tables,
        "transit_gateway_route_tables": raw.transit_gateway_route_tables,
    }
    for section, entries in sections.items():
        for resource, members in entries.items():
            if not _ID_PATTERNS[section].fullmatch(resource):
                raise doc.error(
                    f"{resource!r} is not an id for {section}", section, resource
                )
            listed = [members] if isinstance(members, str) else members
            unknown = sorted(set(listed) - set(policy.subnets))
            if unknown:
                raise doc.error(
                    f"{resource}: not subnets of the policy: {', '.join(unknown)}",
                    section,
                    resource,
                )
    named = list(raw.subnets.values())
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise doc.error(f"subnets given two AWS ids: {', '.join(twice)}", "subnets")
    missing = sorted(set(policy.subnets) - set(named))
    if missing:
        raise doc.error(
            f"policy subnets without an AWS subnet id: {', '.join(missing)}", "subnets"
        )


def affected_pairs(
    event: Mapping[str, Any], network: NetworkMap, policy: Policy
) -> Impact:
    """The policy's pairs a CloudTrail change event can affect.

    ``event`` is the EventBridge envelope (``detail-type``, ``detail``).
    Raises ``UsageError`` for anything that is not a CloudTrail API call.
    """
    detail = _detail(event)
    name = str(detail.get("eventName", ""))
    if detail.get("errorCode"):
        return Impact(name, None, (), f"the call failed ({detail['errorCode']})")
    if name not in WATCHED_EVENTS:
        return Impact(name, None, (), "not a change to segmentation controls")
    params = _Params(name, detail.get("requestParameters"))
    if not params.present:
        return _everything(policy, name, None, "the event carries no parameters")

    return _HANDLERS[name](params, network, policy)


def _detail(event: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = event.get("detail-type") if isinstance(event, Mapping) else None
    detail = event.get("detail") if isinstance(event, Mapping) else None
    if kind != CLOUDTRAIL_DETAIL_TYPE or not isinstance(detail, Mapping):
        raise UsageError("change event", f"not an {CLOUDTRAIL_DETAIL_TYPE!r} event")

    return detail


class _Params:
    """An event's request parameters in either shape CloudTrail records.

    Older EC2 calls log camelCase keys at the top level (``groupId``); newer
    ones wrap PascalCase keys in ``<EventName>Request`` (``GroupId``).
    """

    def __init__(self, event_name: str, raw: object) -> None:
        self.event = event_name
        self.present = isinstance(raw, Mapping) and bool(raw)
        top = raw if isinstance(raw, Mapping) else {}
        wrapped = top.get(f"{event_name}Request")
        self._top: Mapping[str, Any] = top
        self._wrapped: Mapping[str, Any] = (
            wrapped if isinstance(wrapped, Mapping) else {}
        )

    def get(self, key: str) -> str | None:
        value = self._top.get(key, self._wrapped.get(key[:1].upper() + key[1:]))
        return value if isinstance(value, str) and value else None

    def has(self, key: str) -> bool:
        return key in self._top or key[:1].upper() + key[1:] in self._wrapped


def _security_group(params: _Params, network: NetworkMap, policy: Policy) -> Impact:
    name, group = params.event, params.get("groupId")
    subnets = network.controls.get(group or "")
    if subnets is None:
        return _unknown(policy, name, group, "security group")

    return Impact(
        name, group, _touching(policy, subnets), f"security group of {_list(subnets)}"
    )


def _network_acl(params: _Params, network: NetworkMap, policy: Policy) -> Impact:
    name, acl = params.event, params.get("networkAclId")
    subnets = network.controls.get(acl or "")
    if subnets is None:
        return _unknown(policy, name, acl, "network ACL")
    cidr = _cidr(params.get("cidrBlock"))
    if name == "CreateNetworkAclEntry" and cidr is not None:
        pairs = _routed(policy, subnets, cidr)
        return Impact(name, acl, pairs, f"ACL of {_list(subnets)}, entry for {cidr}")
    # A replaced or deleted entry's old range is not in the event.
    return Impact(name, acl, _touching(policy, subnets), f"ACL of {_list(subnets)}")


def _route(params: _Params, network: NetworkMap, policy: Policy) -> Impact:
    name = params.event
    table = params.get("routeTableId") or params.get("transitGatewayRouteTableId")
    subnets = network.controls.get(table or "")
    if subnets is None:
        return _unknown(policy, name, table, "route table")
    cidr = _cidr(params.get("destinationCidrBlock"))
    if cidr is None:
        pairs = _touching(policy, subnets)
        return Impact(name, table, pairs, f"routes of {_list(subnets)}")

    pairs = _routed(policy, subnets, cidr)
    return Impact(name, table, pairs, f"routes of {_list(subnets)} to {cidr}")


def _association(params: _Params, network: NetworkMap, policy: Policy) -> Impact:
    name = params.event
    if name == "ModifyNetworkInterfaceAttribute" and not params.has("groupSet"):
        return Impact(name, None, (), "not a change to segmentation controls")
    subnet_id = params.get("subnetId")
    if name != "AssociateRouteTable" or subnet_id is None:
        return _everything(policy, name, None, "the event does not say which subnet")
    subnet = network.subnets.get(subnet_id)
    if subnet is None:
        return _unknown(policy, name, subnet_id, "subnet")

    return Impact(name, subnet_id, _touching(policy, {subnet}), f"routes of {subnet}")


_HANDLERS: dict[str, Callable[[_Params, NetworkMap, Policy], Impact]] = {
    **dict.fromkeys(SECURITY_GROUP_EVENTS, _security_group),
    **dict.fromkeys(NETWORK_ACL_EVENTS, _network_acl),
    **dict.fromkeys(ROUTE_EVENTS | TRANSIT_GATEWAY_ROUTE_EVENTS, _route),
    **dict.fromkeys(ASSOCIATION_EVENTS, _association),
}


def _touching(policy: Policy, subnets: Iterable[str]) -> tuple[Pair, ...]:
    names = set(subnets)

    return tuple(p for p in policy.pairs if p.src in names or p.dst in names)


def _routed(
    policy: Policy, subnets: Iterable[str], cidr: IPv4Network
) -> tuple[Pair, ...]:
    names = set(subnets)

    def towards(near: str, far: str) -> bool:
        return near in names and policy.subnets[far].cidr.overlaps(cidr)

    return tuple(
        p for p in policy.pairs if towards(p.src, p.dst) or towards(p.dst, p.src)
    )


def _cidr(text: str | None) -> IPv4Network | None:
    try:
        return IPv4Network(text, strict=False) if text else None
    except ValueError:
        return None


def _unknown(policy: Policy, name: str, resource: str | None, kind: str) -> Impact:
    what = f"{kind} {resource}" if resource else f"the {kind}"
    return _everything(policy, name, resource, f"{what} is not in the network map")


def _everything(policy: Policy, name: str, resource: str | None, why: str) -> Impact:
    return Impact(name, resource, policy.pairs, f"{why}; every pair is rescanned")


def _list(subnets: Iterable[str]) -> str:
    return ", ".join(sorted(subnets))
