"""Probes run inside a lab namespace; prints what each saw and every ICMP that came.

    ip netns exec NS python probe.py '[["tcp", "10.0.1.5", 443], ["icmp", ...]]'

Each probe (TCP connect, UDP datagram, ICMP echo) runs in its own thread for
``WAIT_S``; a raw socket records every ICMP message arriving meanwhile, with
the destination of the packet it answers, so a test can assert silence.
"""

from __future__ import annotations

import errno
import json
import socket
import struct
import sys
import threading
import time

WAIT_S = 1.0
# Long enough for a router to give up on ARP (3 x 250 ms) and, if it were not
# silenced, send host-unreachable.
LISTEN_S = 1.6
ECHO_ID = 0x5E6

Probe = tuple[str, str, int]

_ERRNO_OUTCOMES = {
    errno.ECONNREFUSED: "closed",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
}


def main() -> None:
    probes: list[Probe] = [tuple(p) for p in json.loads(sys.argv[1])]
    sniffer = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sniffer.settimeout(0.1)
    icmp: list[dict[str, object]] = []
    listener = threading.Thread(target=_listen, args=(sniffer, icmp))
    listener.start()
    outcomes: list[str] = [""] * len(probes)
    threads = [
        threading.Thread(target=_run, args=(i, probe, sniffer, outcomes))
        for i, probe in enumerate(probes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    listener.join()
    for i, (kind, host, _) in enumerate(probes):
        if kind == "icmp":
            replied = any(m["type"] == 0 and m["src"] == host for m in icmp)
            outcomes[i] = "open" if replied else "timeout"
    results = [
        {"kind": kind, "host": host, "port": port, "outcome": outcomes[i]}
        for i, (kind, host, port) in enumerate(probes)
    ]
    print(json.dumps({"results": results, "icmp": icmp}))


def _run(
    i: int, probe: tuple[str, str, int], raw: socket.socket, out: list[str]
) -> None:
    kind, host, port = probe
    if kind == "icmp":
        raw.sendto(_echo_request(i), (host, 0))
        return
    proto = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, proto) as sock:
        sock.settimeout(WAIT_S)
        try:
            sock.connect((host, port))
            if kind == "udp":
                sock.send(b"segscan-probe")
                sock.recv(512)
            out[i] = "open"
        except TimeoutError:
            out[i] = "timeout"
        except OSError as exc:
            out[i] = _ERRNO_OUTCOMES.get(exc.errno or 0, f"error {exc.errno}")


def _listen(sniffer: socket.socket, icmp: list[dict[str, object]]) -> None:
    deadline = time.monotonic() + LISTEN_S
    while time.monotonic() < deadline:
        try:
            packet, (src, _) = sniffer.recvfrom(2048)
        except TimeoutError:
            continue
        icmp.append(_describe(packet, src))


def _describe(packet: bytes, src: str) -> dict[str, object]:
    header = (packet[0] & 0x0F) * 4
    kind, code = packet[header], packet[header + 1]
    message: dict[str, object] = {"src": src, "type": kind, "code": code}
    inner = packet[header + 8 :]
    if kind in (3, 11) and len(inner) >= 24:
        # An error quotes the IP header and 8 bytes of the packet it answers.
        inner_header = (inner[0] & 0x0F) * 4
        message["dst"] = socket.inet_ntoa(inner[16:20])
        message["dport"] = struct.unpack(
            "!H", inner[inner_header + 2 : inner_header + 4]
        )[0]

    return message


def _echo_request(sequence: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ECHO_ID, sequence)
    payload = b"segscan-probe"

    return (
        struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ECHO_ID, sequence)
        + payload
    )


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16

    return ~total & 0xFFFF


if __name__ == "__main__":
    main()
