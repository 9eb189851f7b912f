"""The benchmark's lab: a scanner namespace and a target namespace over veth.

The target holds a firewalled /28 on its loopback, with listeners on a few
ports of a few hosts, and can drop a share of packets each way.  The target
stands for another machine: its receive path runs on core 1 (RPS on its veth)
and every scanner is pinned to core 0.  Loss is applied inside the target
(ingress and egress), where every tool's packets pass, whatever socket they
were sent from.  ICMP rate limits are off in the target so that the truth does
not depend on timing.  Every name starts with ``sgb``; ``lab()`` removes all.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

SCANNER_NS = "sgbbs"
TARGET_NS = "sgbbt"
SCANNER_DEV = "sgbbs0"
TARGET_DEV = "sgbbt0"
SCANNER_IP = IPv4Address("10.250.0.1")
TARGET_LINK_IP = IPv4Address("10.250.0.2")
TARGETS = IPv4Network("10.250.1.0/28")
SILENT = IPv4Network("10.250.2.0/24")  # routed to the target and dropped there

# Ground truth.  Accepted ports answer RST unless someone listens; the host
# itself rejects some with RST and some with ICMP; everything else is dropped.
LISTENERS = {
    (f"10.250.1.{host}", port)
    for host in (1, 4, 7, 10, 13)
    for port in (22, 80, 443, 3389, 5432, 8080, 8443, 9000)
}
ACCEPTED = frozenset({22, 80, 443, 3389, 5432, 8443, 9000, *range(8000, 8100)})
RESET = frozenset(range(6000, 6011))
PROHIBITED = frozenset(range(7000, 7006))

_FIREWALL = f"""
table inet sgbfw {{
  chain prerouting {{
    type filter hook prerouting priority -300; policy accept;
    ip daddr {SILENT} drop
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    ip saddr != {SCANNER_IP} accept
    tcp dport {{ {", ".join(map(str, sorted(ACCEPTED)))} }} accept
    tcp dport 6000-6010 reject with tcp reset
    tcp dport 7000-7005 reject with icmp type admin-prohibited
    drop
  }}
}}
"""

_LOSS = """
table inet sgbloss {{
  chain ingress {{
    type filter hook prerouting priority -400; policy accept;
    iifname "{dev}" numgen random mod 1000 < {per_mille} drop
  }}
  chain egress {{
    type filter hook postrouting priority 400; policy accept;
    oifname "{dev}" numgen random mod 1000 < {per_mille} drop
  }}
}}
"""

_LISTEN = """
import socket, time
held = []
for ip, port in {listeners}:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(1024)
    held.append(s)
print("ready", flush=True)
time.sleep({lifetime_s})
"""

_HEARTBEAT = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + {lifetime_s}
while time.monotonic() < end:
    try:
        s.sendto(b"beat", ("{to}", 9))
    except OSError:
        pass  # dropped by the lab's own loss rule
    time.sleep(0.05)
"""


_NO_ICMP_LIMITS = (
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=10000000",
    "net.ipv4.icmp_msgs_burst=10000000",
)


def run(ns: str, *argv: str, stdin: str | None = None) -> None:
    """Run a command in namespace ``ns``; fail loudly."""
    subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        input=stdin,
        text=True,
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True)
class Lab:
    """A running lab: what scanners need to know about it."""

    router_mac: str  # the target's veth, the scanner's next hop

    def set_loss(self, loss: float) -> None:
        """Drop ``loss`` of the packets in each direction (0 for none)."""
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                TARGET_NS,
                "nft",
                "delete",
                "table",
                "inet",
                "sgbloss",
            ],
            capture_output=True,
            check=False,
        )
        if loss > 0:
            rules = _LOSS.format(dev=TARGET_DEV, per_mille=round(loss * 1000))
            run(TARGET_NS, "nft", "-f", "-", stdin=rules)

    @contextlib.contextmanager
    def heartbeat(self, lifetime_s: float) -> Iterator[None]:
        """A datagram to the scanner every 50 ms.

        masscan 1.3.2's receive thread blocks until a packet arrives, so on a
        quiet link it never exits (masscan issues #144, #558); this wakes it.
        """
        script = _HEARTBEAT.format(lifetime_s=lifetime_s, to=SCANNER_IP)
        beat = subprocess.Popen(
            ["ip", "netns", "exec", TARGET_NS, sys.executable, "-c", script]
        )
        try:
            yield
        finally:
            beat.kill()
            beat.wait(timeout=10)


@contextlib.contextmanager
def lab(lifetime_s: float) -> Iterator[Lab]:
    """Build the lab, yield it, and remove it whatever happens."""
    listener: subprocess.Popen[str] | None = None
    try:
        _teardown()
        _build()
        script = _LISTEN.format(listeners=sorted(LISTENERS), lifetime_s=lifetime_s)
        listener = subprocess.Popen(
            ["ip", "netns", "exec", TARGET_NS, sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != "ready":
            raise RuntimeError("listeners did not start")
        yield Lab(router_mac=_mac(TARGET_NS, TARGET_DEV))
    finally:
        if listener is not None:
            listener.kill()
            listener.communicate(timeout=10)
        _teardown()


def _build() -> None:
    for ns in (SCANNER_NS, TARGET_NS):
        subprocess.run(["ip", "netns", "add", ns], check=True)
        run(ns, "ip", "link", "set", "lo", "up")
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            SCANNER_DEV,
            "netns",
            SCANNER_NS,
            "type",
            "veth",
            "peer",
            "name",
            TARGET_DEV,
            "netns",
            TARGET_NS,
        ],
        check=True,
    )
    run(SCANNER_NS, "ip", "addr", "add", f"{SCANNER_IP}/30", "dev", SCANNER_DEV)
    run(TARGET_NS, "ip", "addr", "add", f"{TARGET_LINK_IP}/30", "dev", TARGET_DEV)
    for ns, dev in ((SCANNER_NS, SCANNER_DEV), (TARGET_NS, TARGET_DEV)):
        run(ns, "ip", "link", "set", dev, "up")
    for network in (TARGETS, SILENT):
        run(SCANNER_NS, "ip", "route", "add", str(network), "via", str(TARGET_LINK_IP))
    for host in TARGETS:
        run(TARGET_NS, "ip", "addr", "add", f"{host}/32", "dev", "lo")
    run(TARGET_NS, "sysctl", "-qw", *_NO_ICMP_LIMITS)
    rps = f"/sys/class/net/{TARGET_DEV}/queues/rx-0/rps_cpus"
    run(TARGET_NS, "sh", "-c", f"echo 2 > {rps}")  # the target's work on core 1
    run(TARGET_NS, "nft", "-f", "-", stdin=_FIREWALL)
    time.sleep(0.2)


def _teardown() -> None:
    for ns in (SCANNER_NS, TARGET_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _mac(ns: str, dev: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/address"],
        capture_output=True,
        text=True,
        check=True,
    )

    return done.stdout.strip()
