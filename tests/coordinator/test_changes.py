"""Recorded CloudTrail changes map to the pairs they can affect.

The samples in cloudtrail/ follow the shapes AWS documents for each call (the
EventBridge envelope around a CloudTrail record), on the founding deployment's
ids from deploy/aws/founding/network.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.changes import (
    WATCHED_EVENTS,
    Impact,
    NetworkMap,
    NetworkMapError,
    affected_pairs,
    load_network_map,
    parse_network_map,
)
from coordinator.errors import UsageError
from coordinator.policy import Policy, load_policy

FOUNDING = Path(__file__).parents[2] / "deploy/aws/founding"
SAMPLES = Path(__file__).parent / "cloudtrail"

CDE = {f"cde-{tier}" for tier in "abcdefghi"}
CORP = {"corp-a", "corp-b", "corp-c"}
ALL = {(s, d) for s in CDE for d in CORP} | {(s, d) for s in CORP for d in CDE}


def both_ways(near: set[str], far: set[str]) -> set[tuple[str, str]]:
    return {
        p
        for p in ALL
        if (p[0] in near and p[1] in far) or (p[1] in near and p[0] in far)
    }


def touching(subnets: set[str]) -> set[tuple[str, str]]:
    return {p for p in ALL if p[0] in subnets or p[1] in subnets}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(FOUNDING / "policy.yaml")


@pytest.fixture(scope="module")
def network(policy: Policy) -> NetworkMap:
    return load_network_map(FOUNDING / "network.yaml", policy)


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return loaded


def pairs(impact: Impact) -> set[tuple[str, str]]:
    return {(p.src, p.dst) for p in impact.pairs}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("authorize_security_group_ingress", touching({"cde-g", "cde-h", "cde-i"})),
        ("revoke_security_group_egress", touching({"cde-a", "cde-b", "cde-c"})),
        ("modify_security_group_rules", touching({"cde-d", "cde-e", "cde-f"})),
        (
            "create_network_acl_entry",
            both_ways({"cde-a", "cde-b", "cde-c"}, {"corp-b"}),
        ),
        ("replace_network_acl_entry", touching({"cde-d", "cde-e", "cde-f"})),
        ("delete_network_acl_entry", touching({"cde-g", "cde-h", "cde-i"})),
        ("create_route", both_ways({"cde-a", "cde-b", "cde-c"}, CORP)),
        ("replace_route", both_ways(CORP, {"cde-d", "cde-e", "cde-f", "cde-g"})),
        ("delete_route", both_ways(CDE - {"cde-a", "cde-b", "cde-c"}, {"corp-c"})),
        ("create_transit_gateway_route", both_ways(CORP, {"cde-h"})),
        ("replace_transit_gateway_route", both_ways(CDE, {"corp-a"})),
        ("enable_transit_gateway_route_table_propagation", touching(CDE)),
        ("associate_route_table", touching({"cde-c"})),
    ],
)
def test_each_kind_of_change_rescans_the_pairs_it_can_affect(
    name: str, expected: set[tuple[str, str]], network: NetworkMap, policy: Policy
) -> None:
    event = sample(name)

    impact = affected_pairs(event, network, policy)

    assert pairs(impact) == expected
    assert impact.event == event["detail"]["eventName"]
    assert impact.resource is not None
    assert "every pair" not in impact.reason


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (
            "delete_transit_gateway_route",
            "tgw-rtb-0f00000000009999f is not in the network",
        ),
        ("replace_route_table_association", "does not say which subnet"),
        ("modify_network_interface_groups", "does not say which subnet"),
    ],
)
def test_what_the_map_cannot_explain_rescans_every_pair(
    name: str, why: str, network: NetworkMap, policy: Policy
) -> None:
    impact = affected_pairs(sample(name), network, policy)

    assert pairs(impact) == ALL
    assert why in impact.reason
    assert impact.reason.endswith("every pair is rescanned")


def test_an_event_stripped_of_its_parameters_rescans_every_pair(
    network: NetworkMap, policy: Policy
) -> None:
    """The rescan trigger drops oversized parameters rather than the event."""
    event = sample("create_network_acl_entry")
    del event["detail"]["requestParameters"]

    impact = affected_pairs(event, network, policy)

    assert pairs(impact) == ALL
    assert "no parameters" in impact.reason


def test_a_failed_call_changes_nothing(network: NetworkMap, policy: Policy) -> None:
    impact = affected_pairs(
        sample("authorize_security_group_ingress_denied"), network, policy
    )

    assert impact.pairs == ()
    assert "Client.UnauthorizedOperation" in impact.reason


def test_a_call_that_is_not_a_control_change_is_ignored(
    network: NetworkMap, policy: Policy
) -> None:
    event = sample("create_route")
    event["detail"]["eventName"] = "CreateTags"

    impact = affected_pairs(event, network, policy)

    assert impact.pairs == ()
    assert "CreateTags" not in WATCHED_EVENTS


def test_an_interface_attribute_other_than_its_groups_is_ignored(
    network: NetworkMap, policy: Policy
) -> None:
    event = sample("modify_network_interface_groups")
    event["detail"]["requestParameters"] = {
        "networkInterfaceId": "eni-0cde000000000a0e1",
        "sourceDestCheck": {"value": False},
    }

    impact = affected_pairs(event, network, policy)

    assert impact.pairs == ()


def test_a_non_cloudtrail_event_is_a_usage_error(
    network: NetworkMap, policy: Policy
) -> None:
    event = {"detail-type": "EC2 Instance State-change Notification", "detail": {}}

    with pytest.raises(UsageError, match="AWS API Call via CloudTrail"):
        affected_pairs(event, network, policy)


def test_a_map_naming_a_subnet_outside_the_policy_names_file_and_line(
    policy: Policy,
) -> None:
    text = (FOUNDING / "network.yaml").read_text()
    broken = text.replace("[cde-a, cde-b, cde-c]         # web tier", "[cde-z]")

    with pytest.raises(NetworkMapError) as caught:
        parse_network_map(broken, policy, "network.yaml")

    line = 1 + broken.splitlines().index("  sg-0cde000000000b001: [cde-z]")
    assert caught.value.subject == f"network.yaml:{line}"
    assert "cde-z" in caught.value.message


def test_a_map_must_give_every_policy_subnet_an_id(policy: Policy) -> None:
    text = (FOUNDING / "network.yaml").read_text()
    broken = text.replace("  subnet-0f000000000000003: corp-c\n", "")

    with pytest.raises(NetworkMapError, match="without an AWS subnet id: corp-c"):
        parse_network_map(broken, policy, "network.yaml")


def test_a_control_id_in_the_wrong_section_is_rejected(policy: Policy) -> None:
    text = (FOUNDING / "network.yaml").read_text()
    broken = text.replace("acl-0cde000000000c001", "sg-0cde000000000c001")

    with pytest.raises(NetworkMapError, match="not an id for network_acls"):
        parse_network_map(broken, policy, "network.yaml")


def test_a_policy_subnet_may_have_only_one_aws_subnet(policy: Policy) -> None:
    text = (FOUNDING / "network.yaml").read_text()
    broken = text.replace(
        "subnet-0f000000000000003: corp-c", "subnet-0f000000000000003: corp-b"
    )

    with pytest.raises(NetworkMapError, match="given two AWS ids: corp-b"):
        parse_network_map(broken, policy, "network.yaml")
