"""A three-namespace lab for the SYN engine's tests: scanner, router, target.

The router forwards between the scanner's link and the target's and enforces a
firewall in its forward chain (drop, reject with RST, reject with ICMP), so a
witness on the target sees what really crossed.  The target holds a /29 on
its loopback with a few listeners.  Every name starts with ``sgb``; everything
is removed on exit, and nothing is sent outside these namespaces.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import msgspec

from agent.witness import WitnessReport
from protocol.messages import Finding, Proto

TARGETS = IPv4Network("10.201.1.0/29")
OPEN_TCP = {("10.201.1.1", 22), ("10.201.1.1", 80), ("10.201.1.2", 443)}
OPEN_UDP = {("10.201.1.1", 53)}
RESET_TCP = range(200, 211)  # the router answers with a forged RST
PROHIBITED_TCP = range(300, 306)  # the router answers admin-prohibited
DROPPED_TCP = range(1000, 2001)  # the router drops silently
PROHIBITED_UDP = {161}
DROPPED_UDP = {500}
ARRIVED_TCP = 5000  # the target's own firewall drops it: seen, never answered

_FIREWALL = """
table inet sgbfw {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr 10.201.0.1 tcp dport 200-210 reject with tcp reset
    ip saddr 10.201.0.1 tcp dport 300-305 reject with icmp type admin-prohibited
    ip saddr 10.201.0.1 tcp dport 1000-2000 drop
    ip saddr 10.201.0.1 udp dport 161 reject with icmp type admin-prohibited
    ip saddr 10.201.0.1 udp dport 500 drop
  }
}
"""

_HOST_FIREWALL = """
table inet sgbhost {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 5000 drop
  }
}
"""

_LISTENERS = """
import socket, sys, time
held = []
for ip, port in {tcp}:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(64); held.append(s)
udp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in {udp}]
for s, (ip, port) in zip(udp, {udp}):
    s.bind((ip, port)); s.setblocking(False)
print("ready", flush=True)
end = time.monotonic() + 600
while time.monotonic() < end:
    for s in udp:
        try:
            data, peer = s.recvfrom(2048)
            s.sendto(b"answer", peer)
        except BlockingIOError:
            pass
    time.sleep(0.005)
"""

_SCAN = """
import asyncio, json, sys
from ipaddress import IPv4Network
import msgspec
from agent.engine import ScanRequest
from agent.syn import SynEngine
from protocol.ports import parse_ports
args = json.loads(sys.argv[1])
request = ScanRequest(
    targets=tuple(IPv4Network(args["targets"])),
    tcp=parse_ports(args["tcp"]) if args["tcp"] else (),
    udp=parse_ports(args["udp"]) if args["udp"] else (),
    rate_pps=args["rate"], passes=args["passes"], timeout_s=args["timeout"],
)
outcome = asyncio.run(SynEngine().scan(request))
out = {"findings": outcome.findings, "accounting": outcome.accounting.as_dict()}
print(msgspec.json.encode(out).decode())
"""

_WITNESS = """
import json, sys
from ipaddress import IPv4Address
from agent.witness import Witness
witness = Witness(IPv4Address(sys.argv[1]))
witness.start()
print("ready", flush=True)
for line in sys.stdin:
    report = witness.take() if line.strip() == "take" else witness.stop()
    seen = [[src, proto, ports] for (src, proto), ports in report.seen.items()]
    print(json.dumps({**vars(report), "seen": seen}), flush=True)
    if line.strip() != "take":
        break
"""


_NO_ICMP_LIMITS = (
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=1000000",
    "net.ipv4.icmp_msgs_burst=1000000",
)


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _in(ns: str, *argv: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        check=True,
        capture_output=True,
        input=stdin,
        text=True,
    )


@dataclass(frozen=True)
class ScanResult:
    """What the engine printed: typed findings, and its accounting as a dict."""

    findings: list[Finding]
    accounting: dict[str, Any]


@dataclass
class Watch:
    """A running witness: ``take`` ends a window; the last report comes on exit."""

    process: subprocess.Popen[str]
    reports: list[WitnessReport] = field(default_factory=list)

    @property
    def report(self) -> WitnessReport | None:
        return self.reports[-1] if self.reports else None

    def take(self, command: str = "take") -> WitnessReport:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{command}\n")
        self.process.stdin.flush()
        printed = json.loads(self.process.stdout.readline())
        seen = {
            (src, Proto(proto)): tuple(map(tuple, ports))
            for src, proto, ports in printed.pop("seen")
        }
        self.reports.append(WitnessReport(**printed, seen=seen))

        return self.reports[-1]


@dataclass(frozen=True)
class SynLab:
    """Names of a running lab's namespaces."""

    scanner: str
    router: str
    target: str

    def scan(
        self,
        targets: str,
        tcp: str,
        udp: str = "",
        rate: int = 50_000,
        passes: int = 2,
        timeout: float = 0.5,
    ) -> ScanResult:
        """Run the SYN engine in the scanner namespace; its findings and accounting."""
        args = json.dumps(
            {
                "targets": targets,
                "tcp": tcp,
                "udp": udp,
                "rate": rate,
                "passes": passes,
                "timeout": timeout,
            }
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.scanner, sys.executable, "-c", _SCAN, args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        printed = json.loads(done.stdout.splitlines()[-1])

        return ScanResult(
            msgspec.convert(printed["findings"], list[Finding]), printed["accounting"]
        )

    @contextlib.contextmanager
    def witness(self, own_ip: str) -> Iterator[Watch]:
        """Watch ``own_ip`` in the target namespace; the report is there on exit."""
        argv = [sys.executable, "-c", _WITNESS, own_ip]
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.target, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert process.stdout is not None
        watch = Watch(process)
        try:
            assert process.stdout.readline().strip() == "ready"
            yield watch
            watch.take("stop")
        finally:
            process.kill()
            process.communicate(timeout=10)


@contextlib.contextmanager
def syn_lab() -> Iterator[SynLab]:
    """Build the lab; tear it down whatever happens."""
    tag = secrets.token_hex(2)
    lab = SynLab(f"sgb{tag}s", f"sgb{tag}r", f"sgb{tag}t")
    listeners: subprocess.Popen[str] | None = None
    try:
        _build(lab, tag)
        script = _LISTENERS.format(tcp=sorted(OPEN_TCP), udp=sorted(OPEN_UDP))
        listeners = subprocess.Popen(
            ["ip", "netns", "exec", lab.target, sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listeners.stdout is not None
        assert listeners.stdout.readline().strip() == "ready"
        yield lab
    finally:
        if listeners is not None:
            listeners.kill()
            listeners.communicate(timeout=10)
        for ns in (lab.scanner, lab.router, lab.target):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _build(lab: SynLab, tag: str) -> None:
    for ns in (lab.scanner, lab.router, lab.target):
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
    _ip(
        "link",
        "add",
        f"sgb{tag}a",
        "netns",
        lab.scanner,
        "type",
        "veth",
        "peer",
        "name",
        f"sgb{tag}b",
        "netns",
        lab.router,
    )
    _ip(
        "link",
        "add",
        f"sgb{tag}c",
        "netns",
        lab.router,
        "type",
        "veth",
        "peer",
        "name",
        f"sgb{tag}d",
        "netns",
        lab.target,
    )
    for ns, dev, address in (
        (lab.scanner, f"sgb{tag}a", "10.201.0.1/30"),
        (lab.router, f"sgb{tag}b", "10.201.0.2/30"),
        (lab.router, f"sgb{tag}c", "10.201.2.1/30"),
        (lab.target, f"sgb{tag}d", "10.201.2.2/30"),
    ):
        _ip("-n", ns, "addr", "add", address, "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
    for host in TARGETS:
        _ip("-n", lab.target, "addr", "add", f"{host}/32", "dev", "lo")
    _ip("-n", lab.scanner, "route", "add", str(TARGETS), "via", "10.201.0.2")
    _ip("-n", lab.router, "route", "add", str(TARGETS), "via", "10.201.2.2")
    _ip("-n", lab.target, "route", "add", "10.201.0.0/30", "via", "10.201.2.1")
    _in(lab.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for ns in (lab.router, lab.target):  # every ICMP error is part of the truth
        _in(ns, "sysctl", "-qw", *_NO_ICMP_LIMITS)
    _in(lab.router, "nft", "-f", "-", stdin=_FIREWALL)
    _in(lab.target, "nft", "-f", "-", stdin=_HOST_FIREWALL)
    time.sleep(0.1)
