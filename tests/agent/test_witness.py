"""The witness: the pure join with a source's findings, and a real capture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.syn import raw_sockets_available
from agent.witness import WitnessReport, WitnessView, combine
from protocol.messages import Finding, PortState, Proto, Reason
from tests.agent import synlab

DST = "10.0.2.10"


def _closed(ports: tuple[tuple[int, int], ...], ip: str = DST) -> Finding:
    return Finding(ip, Proto.TCP, ports, PortState.CLOSED, Reason.RST, 62)


def test_closed_ports_the_witness_never_saw_are_rejected() -> None:
    view = WitnessView(DST, tcp=((1, 100),))

    out = combine([_closed(((1, 200),))], [view])

    assert out == (
        _closed(((1, 100),)),
        Finding(DST, Proto.TCP, ((101, 200),), PortState.REJECTED, Reason.RST, 62),
    )


def test_an_incomplete_witness_rejects_nothing() -> None:
    """Missing probes may be the witness's own drops: closed stays closed."""
    view = WitnessView(DST, tcp=((1, 100),), complete=False)

    out = combine([_closed(((1, 200),))], [view])

    assert out == (_closed(((1, 200),)),)


def test_seen_but_unanswered_probes_arrived() -> None:
    prohibited = Finding(
        DST, Proto.TCP, ((300, 310),), PortState.PROHIBITED, Reason.ADMIN_PROHIBITED, 64
    )
    view = WitnessView(DST, tcp=((22, 22), (305, 305), (5000, 5000)))

    out = combine([prohibited, _closed(((22, 22),))], [view])

    assert out == (
        _closed(((22, 22),)),
        Finding(
            DST,
            Proto.TCP,
            ((300, 304), (306, 310)),
            PortState.PROHIBITED,
            Reason.ADMIN_PROHIBITED,
            64,
        ),
        Finding(
            DST,
            Proto.TCP,
            ((305, 305), (5000, 5000)),
            PortState.ARRIVED,
            Reason.WITNESS,
        ),
    )


def test_open_ports_and_addresses_without_witness_pass_through() -> None:
    opened = Finding(DST, Proto.TCP, ((443, 443),), PortState.OPEN, Reason.SYN_ACK, 62)
    elsewhere = _closed(((1, 10),), ip="10.0.2.11")

    out = combine([opened, elsewhere], [WitnessView(DST)])

    assert out == (opened, elsewhere)


def test_udp_closed_by_a_forged_unreachable_is_rejected() -> None:
    forged = Finding(
        DST, Proto.UDP, ((53, 53),), PortState.CLOSED, Reason.PORT_UNREACHABLE, 64
    )

    out = combine([forged], [WitnessView(DST, udp=((123, 123),))])

    assert out == (
        Finding(
            DST, Proto.UDP, ((53, 53),), PortState.REJECTED, Reason.PORT_UNREACHABLE, 64
        ),
        Finding(DST, Proto.UDP, ((123, 123),), PortState.ARRIVED, Reason.WITNESS),
    )


def test_report_views_one_source_and_gives_arrived_findings() -> None:
    report = WitnessReport(
        own_ip=DST,
        started_at=0.0,
        finished_at=1.0,
        seen={
            ("10.0.1.4", Proto.TCP): ((22, 22),),
            ("10.0.9.9", Proto.UDP): ((53, 53),),
        },
        dropped=0,
    )

    view = report.view("10.0.1.4")

    assert view == WitnessView(DST, tcp=((22, 22),), udp=(), complete=True)
    assert view.findings() == (
        Finding(DST, Proto.TCP, ((22, 22),), PortState.ARRIVED, Reason.WITNESS),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[synlab.SynLab]:
    if not raw_sockets_available():
        pytest.skip("needs root for namespaces and packet sockets")
    with synlab.syn_lab() as built:
        yield built


@pytest.mark.root
def test_witness_tells_forged_resets_from_real_ones(lab: synlab.SynLab) -> None:
    """The router's RSTs become rejected; a probe the target dropped, arrived."""
    with lab.witness("10.201.1.1") as watch:
        result = lab.scan("10.201.1.1/32", "1-400,5000")

    assert watch.report is not None
    view = watch.report.view("10.201.0.1")
    assert view.complete
    states = {(f.state, f.ports) for f in combine(result.findings, [view])}
    assert states == {
        (PortState.OPEN, ((22, 22), (80, 80))),
        (PortState.CLOSED, ((1, 21), (23, 79), (81, 199), (211, 299), (306, 400))),
        (PortState.REJECTED, ((200, 210),)),
        (PortState.PROHIBITED, ((300, 305),)),
        (PortState.ARRIVED, ((5000, 5000),)),
    }
