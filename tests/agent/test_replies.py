"""The receiver believes only replies that carry the cookie of a probe we sent."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror

from agent.cookie import CookieKey
from agent.replies import Answer, ProbeTable, Receiver

OURS = "10.0.1.4"
TARGET = "10.0.2.5"
ROUTER = "10.0.0.1"
PORT = 41000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    udp_ports = bytearray(65536)
    udp_ports[53] = 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        yield Receiver(
            unused,
            CookieKey(1),
            {socket.inet_aton(TARGET): 0},
            PORT,
            ProbeTable(1),
            ProbeTable(1),
            bytes(udp_ports),
        )


def _feed(receiver: Receiver, packet: IP) -> None:
    data = bytearray(bytes(packet))
    receiver.handle(data, len(data))


def test_syn_ack_with_the_cookie_is_open(receiver: Receiver) -> None:
    ack = receiver.key.cookie(0, 443) + 1
    reply = TCP(sport=443, dport=PORT, flags="SA", ack=ack)
    _feed(receiver, IP(src=TARGET, dst=OURS, ttl=61) / reply)

    assert list(receiver.tcp.entries(0)) == [(443, Answer.SYN_ACK, 61)]


def test_a_forged_reply_is_refused(receiver: Receiver) -> None:
    wrong = receiver.key.cookie(0, 443) + 2
    _feed(
        receiver,
        IP(src=TARGET, dst=OURS) / TCP(sport=443, dport=PORT, flags="RA", ack=wrong),
    )
    _feed(
        receiver,
        IP(src="10.0.2.6", dst=OURS) / TCP(sport=443, dport=PORT, flags="RA", ack=1),
    )

    assert receiver.tcp.count() == 0
    assert receiver.rejected == 2


def _unreachable(src: str, code: int, seq: int, dport: int = 22) -> IP:
    quoted = IPerror(src=OURS, dst=TARGET) / TCPerror(sport=PORT, dport=dport, seq=seq)
    return IP(src=src, dst=OURS, ttl=64) / ICMP(type=3, code=code) / quoted


def test_icmp_from_the_target_itself_is_closed_from_a_router_prohibited(
    receiver: Receiver,
) -> None:
    _feed(receiver, _unreachable(TARGET, 3, receiver.key.cookie(0, 22), 22))
    _feed(receiver, _unreachable(ROUTER, 13, receiver.key.cookie(0, 23), 23))
    _feed(receiver, _unreachable(ROUTER, 3, receiver.key.cookie(0, 24), 24))

    assert [(port, answer) for port, answer, _ in receiver.tcp.entries(0)] == [
        (22, Answer.CLOSED_UNREACHABLE),
        (23, Answer.ADMIN_PROHIBITED),
        (24, Answer.PORT_UNREACHABLE),
    ]


def test_icmp_quoting_a_wrong_cookie_is_refused(receiver: Receiver) -> None:
    _feed(receiver, _unreachable(ROUTER, 13, receiver.key.cookie(0, 22) ^ 1))

    assert receiver.tcp.count() == 0
    assert receiver.rejected == 1


def test_udp_replies_count_only_from_probed_ports(receiver: Receiver) -> None:
    _feed(receiver, IP(src=TARGET, dst=OURS) / UDP(sport=53, dport=PORT) / b"x")
    _feed(receiver, IP(src=TARGET, dst=OURS) / UDP(sport=69, dport=PORT) / b"x")
    cookie = receiver.key.cookie(0, 123) & 0xFFFF
    quoted = IPerror(src=OURS, dst=TARGET, id=cookie) / UDPerror(sport=PORT, dport=123)
    _feed(receiver, IP(src=TARGET, dst=OURS) / ICMP(type=3, code=3) / quoted)

    assert [(p, a) for p, a, _ in receiver.udp.entries(0)] == [
        (53, Answer.UDP_REPLY),
        (123, Answer.CLOSED_UNREACHABLE),
    ]


def test_reachable_answers_win_over_refusals() -> None:
    table = ProbeTable(1)

    table.record(0, 80, Answer.ADMIN_PROHIBITED, 64)
    table.record(0, 80, Answer.RST, 63)
    table.record(0, 80, Answer.HOST_UNREACHABLE, 64)
    table.record(0, 443, Answer.SYN_ACK, 63)
    table.record(0, 443, Answer.RST, 63)

    assert list(table.entries(0)) == [(80, Answer.RST, 63), (443, Answer.SYN_ACK, 63)]
    assert table.count() == 2
    assert table.answered(0, 80)
    assert not table.answered(0, 81)
