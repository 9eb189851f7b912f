"""What a SYN scan reports: answers as findings, UDP silence, unreachable targets."""

from __future__ import annotations

from ipaddress import IPv4Address

from agent.replies import Answer, ProbeTable
from agent.synreport import Accounting, findings
from protocol.messages import Coverage, Finding, PortState, Proto, Reason

TARGETS = [IPv4Address("10.0.2.5"), IPv4Address("10.0.2.6"), IPv4Address("10.0.2.7")]
PORTS = {Proto.TCP: ((1, 1000),), Proto.UDP: ((53, 53), (123, 123))}


def test_answers_become_findings_and_silence_only_for_udp() -> None:
    tables = {Proto.TCP: ProbeTable(3), Proto.UDP: ProbeTable(3)}
    tables[Proto.TCP].record(0, 22, Answer.SYN_ACK, 63)
    tables[Proto.TCP].record(0, 23, Answer.RST, 63)
    tables[Proto.TCP].record(0, 24, Answer.RST, 63)
    tables[Proto.UDP].record(0, 53, Answer.UDP_REPLY, 63)

    out = findings(TARGETS, PORTS, tables, {2: Reason.HOST_UNREACHABLE})

    ip, other, gone = (str(t) for t in TARGETS)
    assert out == (
        Finding(ip, Proto.TCP, ((22, 22),), PortState.OPEN, Reason.SYN_ACK, 63),
        Finding(ip, Proto.TCP, ((23, 24),), PortState.CLOSED, Reason.RST, 63),
        Finding(ip, Proto.UDP, ((53, 53),), PortState.OPEN, Reason.UDP_REPLY, 63),
        Finding(
            ip, Proto.UDP, ((123, 123),), PortState.OPEN_FILTERED, Reason.NO_RESPONSE
        ),
        Finding(
            other,
            Proto.UDP,
            ((53, 53), (123, 123)),
            PortState.OPEN_FILTERED,
            Reason.NO_RESPONSE,
        ),
        Finding(
            gone, Proto.TCP, ((1, 1000),), PortState.PROHIBITED, Reason.HOST_UNREACHABLE
        ),
        Finding(
            gone,
            Proto.UDP,
            ((53, 53), (123, 123)),
            PortState.PROHIBITED,
            Reason.HOST_UNREACHABLE,
        ),
    )


def test_any_kernel_drop_shows_in_coverage() -> None:
    accounting = Accounting(
        planned=10,
        sent=10,
        answered=2,
        passes=2,
        frames=18,
        duration_s=1.0,
        send_s=0.5,
        rate_pps=36.0,
        unsent=1,
        tx_dropped=2,
        rx_dropped=3,
        rejected_replies=0,
        interfaces=("eth0",),
        source_port=40000,
    )

    assert accounting.coverage() == Coverage(10, 10, 2, 2, dropped=6)
    assert accounting.as_dict()["dropped"] == 6
