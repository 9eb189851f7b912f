"""The fault tests' checker: exact accounting, and the lab's ground truth found.

After a run that went through a fault, ``check`` asserts that every planned
chunk is settled exactly once (done, with one counted result; no chunk dead
or still out), that each pair's coverage adds up its chunks' probes exactly
once (a late or duplicate result would add them twice), that every pair has
the founding verdict, and that the reachable findings of every pair are
exactly those the lab spec's listeners and firewall demand.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from deploy.lab.spec import Action, LabSpec, load_spec
from protocol.ports import PortRanges, expand, parse_ports

FOUNDING = Path(__file__).parents[2] / "deploy" / "lab" / "founding"
LAB_STATE = Path("/run/segscan-lab/state.json")
HOLE = ("corp-b", "cde-c")
# Few ports, one pass: a run of all 54 pairs in seconds, still crossing the
# hole (5432) and every listener of the founding lab.
FAULT_SCAN = {
    "tcp": [22, 80, 443, 5432, 8080, 8443],
    "udp": [53, 123],
    "passes": 1,
    "rate": 1000,
}
REACHABLE = ("open", "closed", "arrived")

Probe = tuple[str, str, int, str]  # ip, proto, port, state


def fault_policy(directory: Path) -> Path:
    """The founding policy with the fault tests' short scan, in ``directory``."""
    policy = yaml.safe_load((FOUNDING / "policy.yaml").read_text())
    policy["scan"] = FAULT_SCAN
    path = directory / "fault-policy.yaml"
    path.write_text(yaml.safe_dump(policy))

    return path


def lab_state() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(LAB_STATE.read_text())

    return state


def get(path: str) -> Any:
    """A GET of the lab's coordinator API, as JSON."""
    url = lab_state()["coordinator_url"] + path
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def wait_settled(run_id: str, timeout_s: float) -> dict[str, Any]:
    """The run's report once it is finished; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if get(f"/v1/runs/{run_id}")["finished"]:
                report: dict[str, Any] = get(f"/v1/runs/{run_id}/report")
                return report
        except OSError:
            pass  # the coordinator may be restarting
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not settle in {timeout_s} s")


@dataclass(frozen=True)
class Books:
    """What the checker saw, for tests to assert more on."""

    report: dict[str, Any]
    accounting: dict[str, Any]


def check(run_id: str, report: dict[str, Any]) -> Books:
    """Assert exact accounting and the ground truth for a settled run."""
    books = get(f"/v1/runs/{run_id}/accounting")
    chunks = books["chunks"]

    assert books["counts"] == {"done": len(chunks)}, books["counts"]
    assert [c["id"] for c in chunks if c["results"] != 1] == []
    assert books["results"] == len(chunks)
    _assert_coverage_counted_once(report, chunks)
    _assert_verdicts(report)
    _assert_ground_truth(report, fault_scan_ports())

    return Books(report, books)


def fault_scan_ports() -> dict[str, PortRanges]:
    return {proto: parse_ports(FAULT_SCAN[proto]) for proto in ("tcp", "udp")}


def _assert_coverage_counted_once(
    report: dict[str, Any], chunks: list[dict[str, Any]]
) -> None:
    planned: defaultdict[tuple[str, str], int] = defaultdict(int)
    for chunk in chunks:
        planned[(chunk["src"], chunk["dst"])] += chunk["probes"]
    for pair in report["pairs"]:
        coverage = pair["coverage"]
        key = (pair["src"], pair["dst"])
        assert coverage["planned"] == planned[key], (key, coverage)
        assert coverage["sent"] == planned[key], (key, coverage)


def _assert_verdicts(report: dict[str, Any]) -> None:
    cde = [f"cde-{c}" for c in "abcdefghi"]
    corp = ["corp-a", "corp-b", "corp-c"]
    expected = {(s, d): "pass" for s in corp for d in cde}
    expected |= {(s, d): "allowed" for s in cde for d in corp}
    expected[HOLE] = "fail"
    verdicts = {(p["src"], p["dst"]): p["verdict"] for p in report["pairs"]}

    assert verdicts == expected
    assert report["verdict"] == "fail"


def _assert_ground_truth(report: dict[str, Any], ports: dict[str, PortRanges]) -> None:
    demanded = ground_truth(load_spec(FOUNDING / "lab.yaml"), lab_state(), ports)
    for pair in report["pairs"]:
        key = (pair["src"], pair["dst"])
        seen = {
            (f["ip"], f["proto"], port, f["state"])
            for f in pair["findings"]
            if f["state"] in REACHABLE
            for first, last in f["ports"]
            for port in range(first, last + 1)
        }
        differ = demanded[key] ^ seen
        assert not differ, (key, differ, _reported(pair, {p[0] for p in differ}))


def _reported(pair: dict[str, Any], ips: set[str]) -> list[dict[str, Any]]:
    """What the report says of ``ips`` in ``pair``: every finding, with its
    state, and the witness's summary, for a failure to show."""
    found = [f for f in pair["findings"] if f["ip"] in ips]

    return [*found, {"witness": pair.get("witness")}]


def ground_truth(
    spec: LabSpec, state: dict[str, Any], ports: dict[str, PortRanges]
) -> dict[tuple[str, str], set[Probe]]:
    """For each cross-VPC pair, the probes the firewall lets through, with the
    state the target's listeners give them: ``open`` if it listens, else
    ``closed`` (a RST, or an ICMP port unreachable)."""
    listening: dict[str, dict[str, set[int]]] = {}
    for host in spec.hosts:
        listening[str(host.ip)] = {
            "tcp": set(expand(host.tcp)),
            "udp": set(expand(host.udp)),
        }
    demanded: dict[tuple[str, str], set[Probe]] = {}
    for src in spec.subnets:
        for dst in spec.subnets:
            if src.vpc == dst.vpc:
                continue
            agent = IPv4Address(state["subnets"][src.name]["agent_ip"])
            targets = [str(h.ip) for h in spec.hosts if h.subnet == dst.name]
            targets.append(state["subnets"][dst.name]["agent_ip"])
            demanded[(src.name, dst.name)] = {
                (ip, proto, port, _state(listening, ip, proto, port))
                for ip in targets
                for proto, ranges in ports.items()
                for port in expand(ranges)
                if _permits(spec, agent, IPv4Address(ip), proto, port)
            }

    return demanded


def _state(
    listening: dict[str, dict[str, set[int]]], ip: str, proto: str, port: int
) -> str:
    return "open" if port in listening.get(ip, {}).get(proto, set()) else "closed"


def _permits(
    spec: LabSpec, src: IPv4Address, dst: IPv4Address, proto: str, port: int
) -> bool:
    """The transit firewall's first matching rule accepts; the default drops."""
    for rule in spec.firewall:
        if not any(src in n for n in rule.sources):
            continue
        if not any(dst in n for n in rule.destinations):
            continue
        if rule.tcp is not None or rule.udp is not None:
            ranges = rule.tcp if proto == "tcp" else rule.udp
            if ranges is None or not any(a <= port <= b for a, b in ranges):
                continue
        return rule.action is Action.ACCEPT

    return False
