"""The lab's network, checked with real packets from inside its namespaces.

One small lab (two VPCs, three subnets, three workloads) is built once; every
probe batch runs at the same time, one per source namespace, and each test
reads what its probes saw.  All probes target addresses inside that lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.lab import lab
from deploy.lab.errors import LabStateError
from deploy.lab.spec import load_spec
from deploy.lab.state import LabState
from tests.lab.helpers import (
    Probed,
    finish_probes,
    require_no_lab,
    run_in,
    start_probes,
    write_spec,
)

pytestmark = pytest.mark.root

SPEC = """\
version: 1
subnets:
  pci-a:  {cidr: 10.20.1.0/28, vpc: pci}
  pci-b:  {cidr: 10.20.2.0/28, vpc: pci}
  corp-a: {cidr: 172.20.1.0/28, vpc: corp}
hosts:
  - {ip: 10.20.1.5, tcp: [443, 8000-8039], udp: [53]}
  - {ip: 10.20.2.5, tcp: [22, 5432]}
  - {ip: 172.20.1.5, tcp: [80], udp: [123]}
firewall:
  # Only pci-a may open connections into corp; pci-b may not.
  - {from: pci-a, to: corp, action: accept}
  # The hole: corp-a reaches one port of one pci-b host.
  - {from: corp-a, to: 10.20.2.5, tcp: [5432], action: accept}
  - {from: corp, to: 10.20.1.5, tcp: [443], udp: [53], action: reject}
"""

PCI_A, PCI_B, CORP_A = "sgl-agent-pci-a", "sgl-agent-pci-b", "sgl-agent-corp-a"
ROUTER_PCI_A, ROUTER_PCI_B = "10.20.1.1", "10.20.2.1"
RANGE = [("tcp", "10.20.1.5", port) for port in range(8000, 8040)]
PROBES = {
    PCI_A: [
        ("tcp", "172.20.1.5", 80),
        ("udp", "172.20.1.5", 123),
        ("tcp", "172.20.1.5", 81),
        ("tcp", "172.20.1.9", 80),
        ("tcp", "10.20.2.5", 22),
        ("tcp", "10.20.2.9", 22),
        ("udp", "10.20.2.9", 53),
        ("udp", "10.20.1.5", 53),
        *RANGE,
        ("tcp", ROUTER_PCI_A, 22),
        ("udp", ROUTER_PCI_A, 53),
        ("icmp", ROUTER_PCI_A, 0),
        ("tcp", ROUTER_PCI_B, 22),
        ("icmp", ROUTER_PCI_B, 0),
        ("tcp", "198.18.0.1", 8470),
        ("tcp", "198.18.0.1", 22),
        ("icmp", "198.18.0.1", 0),
        ("tcp", "198.18.0.12", 22),
    ],
    PCI_B: [("tcp", "172.20.1.5", 80), ("icmp", "172.20.1.5", 0)],
    CORP_A: [
        ("tcp", "10.20.2.5", 5432),
        ("tcp", "10.20.2.5", 22),
        ("tcp", "10.20.1.5", 443),
        ("udp", "10.20.1.5", 53),
        ("tcp", "10.20.1.5", 8000),
        ("icmp", "10.20.1.5", 0),
        ("tcp", ROUTER_PCI_A, 22),
    ],
}


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    require_no_lab()
    directory = tmp_path_factory.mktemp("lab")
    spec = load_spec(write_spec(directory, SPEC))
    state_dir = directory / "state"
    try:
        yield lab.up(spec, control=None, state_dir=state_dir)
    finally:
        lab.down(state_dir)


@pytest.fixture(scope="module")
def probed(small_lab: LabState) -> dict[str, Probed]:
    running = {ns: start_probes(ns, probes) for ns, probes in PROBES.items()}

    return {ns: finish_probes(process) for ns, process in running.items()}


def test_accepted_traffic_passes_and_replies_return_by_state(
    probed: dict[str, Probed],
) -> None:
    """pci-a -> corp is allowed; corp -> pci-a is not, yet the replies come back."""
    outcomes = probed[PCI_A].outcomes

    assert outcomes["tcp", "172.20.1.5", 80] == "open"
    assert outcomes["udp", "172.20.1.5", 123] == "open"
    assert outcomes["tcp", "172.20.1.5", 81] == "closed"


def test_traffic_no_rule_allows_is_dropped_without_a_word(
    probed: dict[str, Probed],
) -> None:
    outcomes = probed[PCI_B].outcomes

    assert outcomes["tcp", "172.20.1.5", 80] == "timeout"
    assert outcomes["icmp", "172.20.1.5", 0] == "timeout"
    assert probed[PCI_B].errors() == []


def test_the_hole_opens_one_port_and_its_replies_return_by_state(
    probed: dict[str, Probed],
) -> None:
    """pci-b may not open connections to corp (above), but the SYN-ACK returns."""
    outcomes = probed[CORP_A].outcomes

    assert outcomes["tcp", "10.20.2.5", 5432] == "open"
    assert outcomes["tcp", "10.20.2.5", 22] == "timeout"


def test_reject_answers_rst_for_tcp_and_admin_prohibited_for_udp(
    probed: dict[str, Probed],
) -> None:
    outcomes = probed[CORP_A].outcomes
    errors = probed[CORP_A].errors_about("10.20.1.5")

    assert outcomes["tcp", "10.20.1.5", 443] == "closed"
    assert outcomes["udp", "10.20.1.5", 53] == "unreachable"
    assert [(e["type"], e["code"], e["dport"]) for e in errors] == [(3, 13, 53)]
    assert errors[0]["src"].startswith("198.19.")


def test_default_drop_is_silent(probed: dict[str, Probed]) -> None:
    outcomes = probed[CORP_A].outcomes

    assert outcomes["tcp", "10.20.1.5", 8000] == "timeout"
    assert outcomes["icmp", "10.20.1.5", 0] == "timeout"
    assert outcomes["tcp", ROUTER_PCI_A, 22] == "timeout"


def test_traffic_inside_a_vpc_is_not_filtered(probed: dict[str, Probed]) -> None:
    assert probed[PCI_A].outcomes["tcp", "10.20.2.5", 22] == "open"


def test_workloads_answer_tcp_over_a_port_range_and_udp(
    probed: dict[str, Probed],
) -> None:
    outcomes = probed[PCI_A].outcomes

    assert {outcomes[probe] for probe in RANGE} == {"open"}
    assert outcomes["udp", "10.20.1.5", 53] == "open"


def test_routers_answer_nothing_addressed_to_themselves(
    probed: dict[str, Probed],
) -> None:
    outcomes = probed[PCI_A].outcomes
    seen = probed[PCI_A]

    assert outcomes["tcp", ROUTER_PCI_A, 22] == "timeout"
    assert outcomes["udp", ROUTER_PCI_A, 53] == "timeout"
    assert outcomes["icmp", ROUTER_PCI_A, 0] == "timeout"
    assert outcomes["tcp", ROUTER_PCI_B, 22] == "timeout"
    assert outcomes["icmp", ROUTER_PCI_B, 0] == "timeout"
    assert seen.errors_about(ROUTER_PCI_A) == seen.errors_about(ROUTER_PCI_B) == []


def test_absent_hosts_are_silent(probed: dict[str, Probed]) -> None:
    """Routers give up on ARP for absent hosts and send no host-unreachable."""
    outcomes = probed[PCI_A].outcomes
    seen = probed[PCI_A]

    assert outcomes["tcp", "10.20.2.9", 22] == "timeout"
    assert outcomes["udp", "10.20.2.9", 53] == "timeout"
    assert outcomes["tcp", "172.20.1.9", 80] == "timeout"
    assert seen.errors_about("10.20.2.9") == seen.errors_about("172.20.1.9") == []


def test_management_network_reaches_the_lab_endpoints_only(
    probed: dict[str, Probed],
) -> None:
    """Port 8470 answers RST (reached; nothing listens without a coordinator)."""
    outcomes = probed[PCI_A].outcomes

    assert outcomes["tcp", "198.18.0.1", 8470] == "closed"
    assert outcomes["icmp", "198.18.0.1", 0] == "open"
    assert outcomes["tcp", "198.18.0.1", 22] == "timeout"
    assert outcomes["tcp", "198.18.0.12", 22] == "timeout"


def test_no_namespace_has_a_default_route(small_lab: LabState) -> None:
    namespaces = [s.namespace for s in small_lab.subnets.values()]
    namespaces += [h.namespace for h in small_lab.hosts.values()]
    defaults = [
        run_in(ns, "ip", "route", "show", "default").stdout for ns in namespaces
    ]
    # Asks the routing table only; no packet is sent.
    outside = run_in(PCI_A, "ip", "route", "get", "192.0.2.1")

    assert defaults == [""] * 6
    assert outside.returncode != 0
    assert "unreachable" in outside.stderr


def test_workload_namespaces_have_no_management_leg(small_lab: LabState) -> None:
    links = run_in("sgl-host-10.20.1.5", "ip", "-o", "link", "show").stdout

    assert "sgl-mgmt" not in links
    assert "sgl-data" in links


def test_state_describes_a_network_only_lab(small_lab: LabState) -> None:
    subnet = small_lab.subnets["corp-a"]

    assert (subnet.namespace, subnet.agent_ip, subnet.agent_pid) == (
        CORP_A,
        "172.20.1.4",
        None,
    )
    assert small_lab.coordinator_url is small_lab.sqs_endpoint is None
    assert set(small_lab.pids) == {
        "supervisor",
        "workload-10.20.1.5",
        "workload-10.20.2.5",
        "workload-172.20.1.5",
    }


def test_up_refuses_while_a_lab_is_up(small_lab: LabState, tmp_path: Path) -> None:
    spec = load_spec(small_lab.spec)

    with pytest.raises(LabStateError, match="already up"):
        lab.up(spec, control=None, state_dir=Path(small_lab.state_dir))
    with pytest.raises(LabStateError, match="leftovers of a lab exist"):
        lab.up(spec, control=None, state_dir=tmp_path)


def test_the_transit_forgets_unanswered_probes_within_a_second(
    small_lab: LabState,
) -> None:
    """A full-port scan opens a conntrack entry per accepted probe; held for the
    kernel's default two minutes they fill the table and it starts dropping."""
    keys = [
        "net.netfilter.nf_conntrack_tcp_timeout_syn_sent",
        "net.netfilter.nf_conntrack_tcp_timeout_syn_recv",
        "net.netfilter.nf_conntrack_tcp_timeout_close",
    ]
    shown = run_in("sgl-transit", "sysctl", "-n", *keys).stdout.split()
    routers = {
        run_in(ns, "sysctl", "-n", "net.ipv4.ip_early_demux").stdout.strip()
        for ns in ("sgl-vpc-pci", "sgl-vpc-corp")
    }

    assert shown == ["1", "1", "1"]
    assert routers == {"0"}
