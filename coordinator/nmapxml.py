"""A report as nmap XML, one ``<nmaprun>`` per source subnet, for the tools that
read nmap's output (python-libnmap, nmap's ``ndiff``) and for reviewers used to it.

segscan's states map onto nmap's: ``arrived`` (the witness saw the probe, no
answer) is nmap's ``unfiltered``, reachable but of unknown state; ``prohibited``
and ``rejected`` (a forged RST) are ``filtered``, as neither crossed.  As
nmap does, a state with more than ``LIST_MAX`` ports of a host is summarised
in ``<extraports>``; open and unfiltered ports are always listed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from protocol.ports import count, parse_ports

LIST_MAX = 25
XML_OUTPUT_VERSION = "1.05"

STATES = {
    "open": "open",
    "closed": "closed",
    "filtered": "filtered",
    "open|filtered": "open|filtered",
    "prohibited": "filtered",
    "arrived": "unfiltered",
    "rejected": "filtered",
}
REASONS = {
    "syn-ack": "syn-ack",
    "connected": "syn-ack",
    "rst": "reset",
    "refused": "conn-refused",
    "no-response": "no-response",
    "udp-reply": "udp-response",
    "port-unreachable": "port-unreach",
    "host-unreachable": "host-unreach",
    "net-unreachable": "net-unreach",
    "admin-prohibited": "admin-prohibited",
    "witness": "witness",
}
ALWAYS_LISTED = frozenset({"open", "unfiltered"})

# (proto, port) -> (nmap state, reason, ttl); per host address.
Ports = dict[tuple[str, int], tuple[str, str, int | None]]


def render_all(report: dict[str, Any]) -> dict[str, str]:
    """Source subnet -> the nmap XML document of its scans."""
    sources = sorted({p["src"] for p in report["pairs"]})

    return {src: render(report, src) for src in sources}


def render(report: dict[str, Any], src: str) -> str:
    """The ``<nmaprun>`` of everything the agent of ``src`` probed."""
    start = _epoch(report["started_at"])
    end = _epoch(report["finished_at"]) if report["finished_at"] else start
    method = report.get("method", {})
    root = ET.Element(
        "nmaprun",
        scanner="segscan",
        args=_args(report, src),
        start=str(start),
        startstr=_ctime(start),
        version=report.get("tool", {}).get("version", "unknown"),
        xmloutputversion=XML_OUTPUT_VERSION,
    )
    for proto in ("tcp", "udp"):
        if method.get(proto):
            ET.SubElement(
                root,
                "scaninfo",
                type=_scan_type(proto, method.get("engines", [])),
                protocol=proto,
                numservices=str(count(parse_ports(method[proto]))),
                services=method[proto],
            )
    hosts = _hosts(report, src)
    up = 0
    for ip in sorted(hosts, key=IPv4Address):
        up += _host(root, ip, hosts[ip], start, end)
    _runstats(root, end, end - start, up, len(hosts))
    ET.indent(root)

    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(
        root, encoding="unicode"
    )


def _hosts(report: dict[str, Any], src: str) -> dict[str, Ports]:
    hosts: dict[str, Ports] = defaultdict(dict)
    for pair in report["pairs"]:
        if pair["src"] != src:
            continue
        for f in pair["findings"]:
            state = STATES.get(f["state"], "filtered")
            reason = REASONS.get(f["reason"], f["reason"])
            for first, last in f["ports"]:
                for port in range(first, last + 1):
                    hosts[f["ip"]][(f["proto"], port)] = (state, reason, f.get("ttl"))

    return hosts


def _host(root: ET.Element, ip: str, ports: Ports, start: int, end: int) -> int:
    host = ET.SubElement(root, "host", starttime=str(start), endtime=str(end))
    reachable = any(s in ("open", "closed", "unfiltered") for s, _, _ in ports.values())
    ET.SubElement(
        host,
        "status",
        state="up" if reachable else "down",
        reason="probe-answered" if reachable else "no-response",
        reason_ttl="0",
    )
    ET.SubElement(host, "address", addr=ip, addrtype="ipv4")
    ET.SubElement(host, "hostnames")
    listing = ET.SubElement(host, "ports")
    counts: dict[str, int] = defaultdict(int)
    for state, _, _ in ports.values():
        counts[state] += 1
    for state, n in sorted(counts.items()):
        if state not in ALWAYS_LISTED and n > LIST_MAX:
            _extraports(listing, state, n, ports)
    for (proto, port), (state, reason, ttl) in sorted(ports.items()):
        if state in ALWAYS_LISTED or counts[state] <= LIST_MAX:
            element = ET.SubElement(listing, "port", protocol=proto, portid=str(port))
            ET.SubElement(
                element, "state", state=state, reason=reason, reason_ttl=str(ttl or 0)
            )

    return 1 if reachable else 0


def _extraports(listing: ET.Element, state: str, n: int, ports: Ports) -> None:
    extra = ET.SubElement(listing, "extraports", state=state, count=str(n))
    reasons: dict[str, int] = defaultdict(int)
    for s, reason, _ in ports.values():
        if s == state:
            reasons[reason] += 1
    for reason, k in sorted(reasons.items()):
        ET.SubElement(extra, "extrareasons", reason=reason, count=str(k))


def _runstats(root: ET.Element, end: int, elapsed: int, up: int, total: int) -> None:
    stats = ET.SubElement(root, "runstats")
    ET.SubElement(
        stats,
        "finished",
        time=str(end),
        timestr=_ctime(end),
        elapsed=str(elapsed),
        summary=f"segscan done: {total} IP addresses ({up} hosts up)",
        exit="success",
    )
    ET.SubElement(stats, "hosts", up=str(up), down=str(total - up), total=str(total))


def _args(report: dict[str, Any], src: str) -> str:
    policy = report.get("policy", {})
    sha = policy.get("sha256", "")[:16]

    return (
        f"segscan run {report['run']} from {src} "
        f"(policy {policy.get('source', '?')} sha256 {sha})"
    )


def _scan_type(proto: str, engines: list[str]) -> str:
    if proto == "udp":
        return "udp"

    return "syn" if "syn" in engines else "connect"


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def _ctime(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a %b %d %H:%M:%S %Y")
