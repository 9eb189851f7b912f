"""The join of a destination witness's view with a source's findings."""

from __future__ import annotations

from protocol.messages import Finding, PortState, Proto, Reason
from protocol.witnessing import WitnessView, combine

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
