"""Where each target's frames go: egress interface, source address and the
next hop's hardware address, as the kernel's routing and neighbour tables say.

The SYN engine writes whole Ethernet frames, so it needs what the kernel would
have worked out for it.  Routes come from ``ip route get`` (policy routing
included); a next hop missing from the neighbour table is resolved by the
kernel itself when the caller sends it one ordinary probe.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from agent.errors import ScanError

RESOLVE_TIMEOUT_S = 3.5  # the kernel's ARP gives up after 3 probes, 1 s apart
_USABLE = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}
_FAILED = {"FAILED"}  # INCOMPLETE is still being resolved
_IFF_LOOPBACK = 0x8
_IFF_NOARP = 0x80


@dataclass(frozen=True)
class Route:
    """How the kernel would send to one target."""

    interface: str
    source: IPv4Address
    gateway: IPv4Address | None

    def next_hop(self, target: IPv4Address) -> IPv4Address:
        """The address whose hardware address frames to ``target`` carry."""
        return self.gateway or target


def routes(targets: Iterable[IPv4Address]) -> dict[IPv4Address, Route]:
    """The route to every target that has one; unroutable targets are absent."""
    wanted = list(targets)
    if not wanted:
        return {}
    script = "".join(f"route get {target}\n" for target in wanted)
    try:
        done = subprocess.run(
            ["ip", "-json", "-force", "-batch", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ScanError("syn", f"cannot read the routing table: {exc}") from exc
    found: dict[IPv4Address, Route] = {}
    for line in done.stdout.splitlines():
        for entry in json.loads(line) if line.strip() else []:
            gateway = entry.get("gateway")
            found[IPv4Address(entry["dst"])] = Route(
                interface=entry["dev"],
                source=IPv4Address(entry["prefsrc"]),
                gateway=IPv4Address(gateway) if gateway else None,
            )

    return found


def is_loopback(interface: str) -> bool:
    """Whether ``interface`` is the loopback: where this host's own addresses
    route, and where frames written to a packet socket never reach its stack."""
    flags = (Path("/sys/class/net") / interface / "flags").read_text()

    return bool(int(flags, 16) & _IFF_LOOPBACK)


def needs_no_neighbour(interface: str) -> bool:
    """Whether frames on ``interface`` go out without address resolution."""
    flags = (Path("/sys/class/net") / interface / "flags").read_text()

    return bool(int(flags, 16) & (_IFF_NOARP | _IFF_LOOPBACK))


def neighbours(interface: str) -> tuple[dict[IPv4Address, bytes], set[IPv4Address]]:
    """Hardware addresses the kernel knows on ``interface``, and the addresses
    whose resolution failed."""
    try:
        done = subprocess.run(
            ["ip", "-json", "-4", "neigh", "show", "dev", interface],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScanError("syn", f"cannot read neighbours of {interface}: {exc}") from exc
    known: dict[IPv4Address, bytes] = {}
    failed: set[IPv4Address] = set()
    for entry in json.loads(done.stdout or "[]"):
        address, states = IPv4Address(entry["dst"]), set(entry.get("state", []))
        if "lladdr" in entry and states & _USABLE:
            known[address] = bytes.fromhex(entry["lladdr"].replace(":", ""))
        elif states & _FAILED:
            failed.add(address)

    return known, failed


def resolve(
    interface: str,
    hops: dict[IPv4Address, IPv4Address],
    prime: Callable[[IPv4Address], None],
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> dict[IPv4Address, bytes]:
    """The hardware address of each next hop in ``hops`` (next hop -> one target
    behind it) that answers; the kernel resolves missing ones while ``prime``
    sends that target a probe.  Unanswering next hops are absent.
    """
    if needs_no_neighbour(interface):
        return dict.fromkeys(hops, bytes(6))
    known, _failed = neighbours(interface)
    missing = [hop for hop in hops if hop not in known]
    for hop in missing:
        prime(hops[hop])
    deadline = time.monotonic() + timeout_s
    while missing and time.monotonic() < deadline:
        time.sleep(0.05)
        known, failed = neighbours(interface)
        missing = [hop for hop in missing if hop not in known and hop not in failed]

    return {hop: known[hop] for hop in hops if hop in known}
