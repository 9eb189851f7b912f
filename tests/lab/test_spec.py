"""The lab spec: what a valid spec becomes, and errors that name file:line."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from deploy.lab.cli import FOUNDING_SPEC
from deploy.lab.errors import SpecError
from deploy.lab.spec import Action, load_spec
from tests.lab.helpers import write_spec

HEAD = """\
version: 1
subnets:
  cde-a: {cidr: 10.0.1.0/28, vpc: cde}
  cde-b: {cidr: 10.0.2.0/28, vpc: cde}
  corp-a: {cidr: 172.16.1.0/28, vpc: corp}
"""


def _error(tmp_path: Path, text: str) -> str:
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)

    return str(caught.value).removeprefix(f"{path}:")


def test_founding_case_has_nine_pci_and_three_corp_subnets_a_hole_a_reject() -> None:
    spec = load_spec(FOUNDING_SPEC)

    assert [s.name for s in spec.subnets if s.vpc == "cde"] == [
        f"cde-{c}" for c in "abcdefghi"
    ]
    assert [s.name for s in spec.subnets if s.vpc == "corp"] == [
        "corp-a",
        "corp-b",
        "corp-c",
    ]
    assert spec.subnet("cde-c").cidr == IPv4Network("10.0.3.0/28")
    hole = spec.firewall[1]
    assert (hole.source, hole.destination, hole.tcp, hole.udp) == (
        "corp-b",
        "10.0.3.5",
        ((5432, 5432),),
        None,
    )
    reject = spec.firewall[2]
    assert (reject.source, reject.destination, reject.tcp, reject.action) == (
        "corp-a",
        "10.0.2.4",
        ((22, 22),),
        Action.REJECT,
    )
    assert [rule.action for rule in spec.firewall] == [
        Action.ACCEPT,
        Action.ACCEPT,
        Action.REJECT,
    ]
    assert spec.loss == 0.0


def test_rule_endpoints_resolve_vpcs_subnets_and_cidrs(tmp_path: Path) -> None:
    spec = load_spec(
        write_spec(
            tmp_path,
            HEAD
            + """\
hosts:
  - {ip: 10.0.1.5, tcp: "443,8000-8040", udp: 53}
firewall:
  - {from: cde, to: corp-a, action: accept}
  - {from: 172.16.1.0/24, to: 10.0.1.5, tcp: [22], udp: [53], action: reject}
loss: 0.25
""",
        )
    )

    first, second = spec.firewall
    assert first.sources == (IPv4Network("10.0.1.0/28"), IPv4Network("10.0.2.0/28"))
    assert first.destinations == (IPv4Network("172.16.1.0/28"),)
    assert (first.tcp, first.udp) == (None, None)
    assert second.sources == (IPv4Network("172.16.1.0/24"),)
    assert second.destinations == (IPv4Network("10.0.1.5/32"),)
    assert second.action is Action.REJECT
    assert second.line == 10
    host = spec.hosts[0]
    assert (host.ip, host.subnet) == (IPv4Address("10.0.1.5"), "cde-a")
    assert (host.tcp, host.udp) == (((443, 443), (8000, 8040)), ((53, 53),))
    assert spec.loss == 0.25


@pytest.mark.parametrize(
    ("tail", "line", "message"),
    [
        (
            "firewall:\n  - {from: corp-z, to: cde, action: drop}\n",
            7,
            "'corp-z' is no subnet, vpc or CIDR of this lab",
        ),
        ("hosts:\n  - {ip: 10.9.9.5}\n", 7, "host 10.9.9.5 is outside every subnet"),
        (
            "hosts:\n  - {ip: 10.0.1.4}\n",
            7,
            "host 10.0.1.4 is the agent of subnet cde-a",
        ),
        ("hosts:\n  - {ip: 10.0.2.1}\n", 7, "is the router of subnet cde-b"),
        ("hosts:\n  - {ip: 10.0.1.5, tcp: [0]}\n", 7, "bad tcp ports: bad port range"),
        ("hosts:\n  - {ip: 10.0.1.5, udp: 70000}\n", 7, "bad udp ports"),
        (
            "hosts:\n  - {ip: 10.0.1.5, tcp: [ssh]}\n",
            7,
            "bad tcp ports: bad port 'ssh'",
        ),
        ("hosts:\n  - {ip: 10.0.1.5, prot: tcp}\n", 7, "unknown field `prot`"),
        (
            "hosts:\n  - {ip: 10.0.1.5}\n  - {ip: 10.0.1.5}\n",
            8,
            "host 10.0.1.5 is listed twice",
        ),
        (
            "firewall:\n  - {from: cde-a, to: cde-b, action: drop}\n",
            7,
            "rule never applies: traffic inside vpc cde flows through its VPC router",
        ),
        (
            "firewall:\n  - {from: corp, to: cde, action: allow}\n",
            7,
            "Invalid enum value 'allow'",
        ),
        (
            "firewall:\n  - {from: corp, to: 192.168.0.0/16, action: drop}\n",
            7,
            "192.168.0.0/16 matches no subnet of the lab",
        ),
        (
            "firewall:\n  - {from: corp, to: cde}\n",
            7,
            "missing required field `action`",
        ),
        ("loss: 1.5\n", 6, "Expected `float` < 1.0"),
    ],
)
def test_mistakes_after_the_subnets_name_their_line(
    tmp_path: Path, tail: str, line: int, message: str
) -> None:
    error = _error(tmp_path, HEAD + tail)

    assert error.startswith(f"{line}: ")
    assert message in error


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("{cidr: 10.0.3.0/33, vpc: cde}", "bad CIDR '10.0.3.0/33'"),
        ("{cidr: 10.0.3.1/28, vpc: cde}", "has host bits set"),
        ("{cidr: 10.0.2.8/29, vpc: cde}", "overlaps subnet cde-b (10.0.2.0/28)"),
        ("{cidr: 10.0.3.0/30, vpc: cde}", "is too small"),
        ("{cidr: 198.18.7.0/24, vpc: cde}", "overlaps 198.18.0.0/15"),
        (
            "{cidr: 127.1.0.0/24, vpc: cde}",
            "loopback, link-local, multicast or reserved",
        ),
    ],
)
def test_bad_subnet_cidrs_name_their_line(
    tmp_path: Path, subnet: str, message: str
) -> None:
    error = _error(tmp_path, f"{HEAD}  cde-c: {subnet}\n")

    assert error.startswith("6: ")
    assert message in error


def test_subnet_entry_errors_name_the_subnet(tmp_path: Path) -> None:
    error = _error(tmp_path, HEAD + "  cde-c: {vpc: cde}\n")

    assert error == "6: subnet cde-c: missing field `cidr`"


def test_a_name_used_for_a_subnet_and_a_vpc_is_ambiguous(tmp_path: Path) -> None:
    error = _error(tmp_path, HEAD + "  corp: {cidr: 172.16.2.0/28, vpc: corp}\n")

    assert error.startswith("6: 'corp' names both a subnet and a vpc")


def test_unsupported_version_is_named(tmp_path: Path) -> None:
    error = _error(tmp_path, HEAD.replace("version: 1", "version: 2"))

    assert error == "1: unsupported version 2: expected 1"


def test_invalid_yaml_names_its_line(tmp_path: Path) -> None:
    error = _error(tmp_path, HEAD + "hosts: [\n")

    assert error.startswith("7: invalid YAML")


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "absent.yaml")
