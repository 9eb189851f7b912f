"""The SYN engine end to end in a three-namespace lab, against known truth."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.syn import SynEngine, raw_sockets_available
from protocol.messages import Finding
from protocol.ports import expand
from tests.agent import synlab

pytestmark = pytest.mark.root

State = tuple[str, str, int | None]  # state, reason, TTL


@pytest.fixture(scope="module")
def lab() -> Iterator[synlab.SynLab]:
    if not raw_sockets_available():
        pytest.skip("needs root for namespaces and packet sockets")
    with synlab.syn_lab() as built:
        yield built


def _states(findings: list[Finding]) -> dict[tuple[str, str, int], State]:
    return {
        (f.ip, f.proto, port): (f.state, f.reason, f.ttl)
        for f in findings
        for port in expand(f.ports)
    }


def _expected_tcp(ip: str, port: int) -> State | None:
    if (ip, port) in synlab.OPEN_TCP:
        return ("open", "syn-ack", 63)
    if port in synlab.RESET_TCP:
        return ("closed", "rst", 64)  # forged one hop early: a higher TTL
    if port in synlab.PROHIBITED_TCP:
        return ("prohibited", "admin-prohibited", 64)
    if port in synlab.DROPPED_TCP or port == synlab.ARRIVED_TCP:
        return None
    return ("closed", "rst", 63)


def _expected_udp(ip: str, port: int) -> State:
    if (ip, port) in synlab.OPEN_UDP:
        return ("open", "udp-reply", 63)
    if port in synlab.PROHIBITED_UDP:
        return ("prohibited", "admin-prohibited", 64)
    if port in synlab.DROPPED_UDP:
        return ("open|filtered", "no-response", None)
    return ("closed", "port-unreachable", 63)


def test_scan_matches_the_lab_exactly(lab: synlab.SynLab) -> None:
    """Every port of a /29 gets the state, reason and TTL the lab dictates."""
    result = lab.scan(str(synlab.TARGETS), "1-2000,5000", "53,123,161,500")

    got = _states(result.findings)
    want: dict[tuple[str, str, int], State] = {}
    for host in synlab.TARGETS:
        ip = str(host)
        for port in [*range(1, 2001), 5000]:
            state = _expected_tcp(ip, port)
            if state is not None:
                want[ip, "tcp", port] = state
        for port in (53, 123, 161, 500):
            want[ip, "udp", port] = _expected_udp(ip, port)
    assert got == want
    accounting = result.accounting
    assert accounting["planned"] == accounting["sent"] == 8 * (2001 + 4)
    assert accounting["dropped"] == 0
    assert accounting["rejected_replies"] == 0


def test_second_pass_sends_only_unanswered_probes(lab: synlab.SynLab) -> None:
    """Pass two re-sends exactly the probes that stayed silent in pass one."""
    result = lab.scan("10.201.1.1/32", "1-400,1000-1099", passes=2)

    accounting = result.accounting
    silent = 100  # 1000-1099 dropped by the router
    assert accounting["passes"] == 2
    primed = accounting["frames"] - (500 + silent)  # a probe that resolved ARP
    assert primed in (0, 1)


def test_rate_is_held(lab: synlab.SynLab) -> None:
    """At 20,000 probes per second, 10,000 probes take about half a second."""
    result = lab.scan("10.201.1.1/32", "1-10000", rate=20_000, passes=1)

    accounting = result.accounting
    assert 0.45 <= accounting["send_s"] <= 0.65
    assert 17_000 <= accounting["rate_pps"] <= 21_000


def test_engine_name() -> None:
    assert SynEngine.name == "syn"


def test_agent_scan_json_prints_the_syn_accounting(lab: synlab.SynLab) -> None:
    """``agent scan --json`` with the SYN engine: findings and its full accounting."""
    done = subprocess.run(
        [
            *("ip", "netns", "exec", lab.scanner),
            *(sys.executable, "-c", "from agent.cli import main; main()"),
            *("scan", "10.201.1.1/32", "-p", "1-300", "--engine", "syn", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[2],
    )

    report = json.loads(done.stdout)
    assert report["engine"] == "syn"
    accounting = report["accounting"]
    # Every port of 1-300 answers: open, RST (real or forged) or admin-prohibited.
    assert accounting["planned"] == accounting["sent"] == accounting["answered"] == 300
    assert accounting["rx_dropped"] == accounting["tx_dropped"] == 0
    assert accounting["rate_pps"] > 0
    assert accounting["passes"] >= 1
    opened = [f for f in report["findings"] if f["state"] == "open"]
    assert [(f["ports"], f["reason"], f["ttl"]) for f in opened] == [
        ([[22, 22], [80, 80]], "syn-ack", 63)
    ]
