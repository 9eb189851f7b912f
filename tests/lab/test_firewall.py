"""The nftables rulesets: the spec's rules in order, silent routers, loss."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.lab import firewall, lab
from deploy.lab.spec import LabSpec, load_spec
from tests.lab.helpers import require_no_lab, run_in, write_spec

SPEC = """\
version: 1
subnets:
  a: {cidr: 10.0.1.0/28, vpc: x}
  b: {cidr: 10.0.2.0/28, vpc: y}
firewall:
  - {from: x, to: y, action: accept}
  - {from: b, to: 10.0.1.5, tcp: [22, 6000-6010], udp: 53, action: reject}
  - {from: b, to: 10.0.1.6, action: reject}
  - {from: b, to: 10.0.1.7, udp: 1-100, action: drop}
"""


@pytest.fixture
def spec(tmp_path: Path) -> LabSpec:
    return load_spec(write_spec(tmp_path, SPEC))


def _forward_rules(ruleset: str) -> list[str]:
    lines = ruleset.splitlines()
    start = lines.index("  chain forward {") + 2
    end = lines.index("  }", start)

    return [line.strip() for line in lines[start:end]]


def test_transit_keeps_state_then_applies_rules_in_order(spec: LabSpec) -> None:
    rules = _forward_rules(firewall.transit_ruleset(spec))

    assert rules[:2] == ["ct state established,related accept", "ct state invalid drop"]
    assert [rule.split(" comment ")[1] for rule in rules[2:]] == [
        '"rule 1: x -> y"',
        '"rule 2: b -> 10.0.1.5"',
        '"rule 2: b -> 10.0.1.5"',
        '"rule 3: b -> 10.0.1.6"',
        '"rule 3: b -> 10.0.1.6"',
        '"rule 4: b -> 10.0.1.7"',
    ]
    assert "policy drop" in firewall.transit_ruleset(spec).split("chain forward")[1]


def test_reject_is_a_reset_for_tcp_and_admin_prohibited_otherwise(
    spec: LabSpec,
) -> None:
    rules = _forward_rules(firewall.transit_ruleset(spec))

    assert "tcp dport { 22, 6000-6010 } reject with tcp reset" in rules[3]
    assert "udp dport { 53 } reject with icmp type admin-prohibited" in rules[4]
    assert "meta l4proto tcp reject with tcp reset" in rules[5]
    assert (
        rules[6]
        .split(" comment ")[0]
        .endswith("ip daddr { 10.0.1.6/32 } reject with icmp type admin-prohibited")
    )
    assert "udp dport { 1-100 } drop" in rules[7]


def test_routers_answer_nothing_and_send_only_reject_answers(spec: LabSpec) -> None:
    transit = firewall.transit_ruleset(spec).split("chain output {")[1]
    router = firewall.router_ruleset()

    assert "policy drop" in transit.split("}")[0]
    assert "tcp flags & rst == rst accept" in transit
    assert "icmp code admin-prohibited accept" in transit
    for ruleset in (firewall.transit_ruleset(spec), router):
        assert "hook input priority filter; policy drop;" in ruleset
    assert "hook output priority filter; policy drop;\n  }" in router


def test_loss_drops_on_every_given_device_and_vanishes_at_zero() -> None:
    ruleset = firewall.loss_ruleset(["sgl-data", "sgl-p3"], 0.2)

    assert ruleset.count("hook ingress") == 2
    assert 'device "sgl-p3"' in ruleset
    assert "meta protocol ip numgen random mod 1000000 < 200000 drop" in ruleset
    assert firewall.loss_ruleset(["sgl-data"], 0.0) == ""


def test_management_admits_sqs_and_coordinator_and_routes_nothing() -> None:
    ruleset = firewall.management_ruleset()

    assert 'iifname "sgl-mgmtbr" tcp dport { 5000, 8470 } accept' in ruleset
    assert ruleset.split("chain forward")[1].count("drop") == 2


@pytest.fixture
def scratch_namespace() -> Iterator[str]:
    require_no_lab()
    name = "sgl-test-nft"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.mark.root
def test_nft_accepts_every_ruleset(spec: LabSpec, scratch_namespace: str) -> None:
    subprocess.run(
        ["ip", "-n", scratch_namespace, "link", "add", "sgl-data", "type", "veth"],
        check=True,
    )
    rulesets = [
        firewall.transit_ruleset(spec),
        firewall.router_ruleset(),
        firewall.loss_ruleset(["sgl-data"], 0.5),
        firewall.management_ruleset(),
    ]
    checks = [
        subprocess.run(
            ["ip", "netns", "exec", scratch_namespace, "nft", "-c", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            check=False,
        )
        for ruleset in rulesets
    ]

    assert [(c.returncode, c.stderr) for c in checks] == [(0, "")] * 4


LOSSY = """\
version: 1
subnets:
  a: {cidr: 10.50.1.0/28, vpc: x}
hosts:
  - {ip: 10.50.1.5, udp: [7]}
loss: 0.2
"""
# Sent at once, answers counted for a second and a half.
COUNT_REPLIES = """\
import socket, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.1)
for _ in range({sent}):
    sock.sendto(b"x", ("10.50.1.5", 7))
replies, deadline = 0, time.monotonic() + 1.5
while time.monotonic() < deadline:
    try:
        sock.recv(64)
        replies += 1
    except TimeoutError:
        pass
print(replies)
"""


@pytest.mark.root
def test_loss_drops_some_packets_on_every_link_each_way(tmp_path: Path) -> None:
    """Four lossy link ends lie on a round trip: about 0.8**4 = 41% come back."""
    require_no_lab()
    spec = load_spec(write_spec(tmp_path, LOSSY))
    state_dir = tmp_path / "state"
    sent = 60
    try:
        lab.up(spec, control=None, state_dir=state_dir)
        done = run_in(
            "sgl-agent-a", sys.executable, "-c", COUNT_REPLIES.format(sent=sent)
        )
    finally:
        lab.down(state_dir)
    replies = int(done.stdout)

    assert 5 <= replies <= 45
