"""A witness for the end-to-end tests, run inside a lab namespace.

    ip netns exec NS python -m tests.e2e.watch OWN_IP

Prints ``ready`` once watching, stops at a line (or the end) on stdin, then
prints one JSON object: the probes that reached OWN_IP, by source address.
"""

from __future__ import annotations

import json
import sys
from ipaddress import IPv4Address

from agent.witness import Witness
from protocol.ports import format_ports


def main() -> int:
    witness = Witness(IPv4Address(sys.argv[1]))
    witness.start()
    print("ready", flush=True)
    sys.stdin.readline()
    report = witness.stop()
    seen: dict[str, dict[str, str]] = {}
    for (source, proto), ports in report.seen.items():
        seen.setdefault(source, {})[str(proto)] = format_ports(ports)
    print(json.dumps({"seen": seen, "dropped": report.dropped}), flush=True)

    return 0


if __name__ == "__main__":
    sys.exit(main())
