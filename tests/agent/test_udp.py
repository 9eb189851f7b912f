"""UDP probes carry real requests that scapy parses as their protocol."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest
from scapy.layers.dns import DNS
from scapy.layers.inet import IP, UDP
from scapy.layers.isakmp import ISAKMP
from scapy.layers.l2 import Ether
from scapy.layers.netbios import NBNSHeader
from scapy.layers.ntp import NTP
from scapy.layers.radius import Radius
from scapy.layers.snmp import SNMP

from agent.udp import known_ports, payload, udp_probe


@pytest.mark.parametrize(
    ("port", "layer", "check"),
    [
        (53, DNS, lambda p: p.qd[0].qtype == 2),  # NS
        (5353, DNS, lambda p: p.qd[0].unicastresponse == 1),
        (123, NTP, lambda p: p.mode == 3),
        (161, SNMP, lambda p: p.community.val == b"public"),
        (500, ISAKMP, lambda p: p.exch_type == 2),
        (137, NBNSHeader, lambda p: p.QDCOUNT == 1),
        (1812, Radius, lambda p: p.code == 1),
    ],
)
def test_payloads_parse_as_their_protocol(
    port: int, layer: type, check: Callable[[Any], bool]
) -> None:
    parsed = layer(payload(port))

    assert check(parsed)
    assert bytes(parsed.original) == payload(port)


def test_text_and_rpc_payloads_are_well_formed() -> None:
    assert payload(1900).startswith(b"M-SEARCH * HTTP/1.1\r\n")
    assert payload(5060).startswith(b"OPTIONS sip:")
    assert payload(111)[4:16] == bytes.fromhex("0000000000000002000186a0")
    assert payload(4500)[:4] == bytes(4)
    assert payload(9) == b""
    assert {53, 123, 161, 500} <= set(known_ports())


def test_probe_frames_have_valid_checksums_and_carry_the_cookie() -> None:
    frame = udp_probe(
        (bytes.fromhex("020000000001"), bytes.fromhex("020000000002")),
        IPv4Address("10.0.1.4"),
        IPv4Address("10.0.2.5"),
        (40000, 53),
        0xBEEF,
    )
    packet = Ether(frame)
    ip_sum, udp_sum = packet[IP].chksum, packet[UDP].chksum
    del packet[IP].chksum
    del packet[UDP].chksum
    rebuilt = Ether(bytes(packet))

    assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == (ip_sum, udp_sum)
    assert packet[IP].id == 0xBEEF
    assert (packet[UDP].sport, packet[UDP].dport) == (40000, 53)
    assert bytes(packet[UDP].payload) == payload(53)
