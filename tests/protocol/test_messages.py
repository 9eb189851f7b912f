"""The wire messages: what they hold, what reachable means, and their closedness."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol import codec
from protocol.messages import (
    PROTOCOL_VERSION,
    Assignment,
    Coverage,
    Finding,
    Heartbeat,
    PortState,
    Proto,
    Reason,
    Result,
    ScanKind,
)

ASSIGNMENT = Assignment(
    id="a1",
    run_id="run-1",
    src="corp-a",
    dst="cde-a",
    targets=("10.0.1.0/29", "10.0.1.8/30"),
    tcp=((22, 22), (8000, 8100)),
    udp=((53, 53),),
    rate_pps=1000,
    passes=2,
    issued_at=1_700_000_000.0,
    expires_at=1_700_003_600.0,
    kind=ScanKind.CONNECT,
)
RESULT = Result(
    assignment_id="a1",
    run_id="run-1",
    src="corp-a",
    dst="cde-a",
    agent="corp-a@host",
    engine="connect",
    started_at=1_700_000_010.0,
    finished_at=1_700_000_020.5,
    coverage=Coverage(planned=100, sent=100, answered=3, passes=2, dropped=1),
    findings=(
        Finding("10.0.1.5", Proto.TCP, ((22, 22),), PortState.OPEN, Reason.SYN_ACK, 63),
        Finding(
            "10.0.1.6",
            Proto.UDP,
            ((53, 53),),
            PortState.PROHIBITED,
            Reason.ADMIN_PROHIBITED,
        ),
    ),
    error="interface went down",
)
HEARTBEAT = Heartbeat(
    agent="corp-a@host", subnet="corp-a", sent_at=1.5, assignment_id="a1"
)


@pytest.mark.parametrize(
    "message",
    [ASSIGNMENT, RESULT, HEARTBEAT],
    ids=["assignment", "result", "heartbeat"],
)
def test_every_message_round_trips_through_msgpack(
    message: Assignment | Result | Heartbeat,
) -> None:
    kind: Any = type(message)

    decoded = codec.decode(codec.encode(message), kind)

    assert decoded == message
    assert decoded.version == PROTOCOL_VERSION


def test_optional_fields_default_when_absent() -> None:
    beat = Heartbeat(agent="a", subnet="s", sent_at=0.0)
    finding = Finding("10.0.0.1", Proto.TCP, ((1, 1),), PortState.CLOSED, Reason.RST)

    assert codec.decode(codec.encode(beat), Heartbeat).assignment_id is None
    assert finding.ttl is None
    assert Coverage(1, 1, 0, 1).dropped == 0
    assert ASSIGNMENT.version == PROTOCOL_VERSION


def test_messages_carry_their_type_tag_on_the_wire() -> None:
    raw = msgspec.msgpack.decode(codec.encode(HEARTBEAT))

    assert raw["type"] == "heartbeat"
    assert raw["version"] == PROTOCOL_VERSION


def test_messages_are_frozen() -> None:
    with pytest.raises(AttributeError):
        ASSIGNMENT.rate_pps = 1  # type: ignore[misc]


def test_building_a_message_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported protocol version 2"):
        Heartbeat(agent="a", subnet="s", sent_at=0.0, version=2)


@pytest.mark.parametrize(
    ("state", "reachable"),
    [
        (PortState.OPEN, True),
        (PortState.CLOSED, True),
        (PortState.ARRIVED, True),
        (PortState.FILTERED, False),
        (PortState.OPEN_FILTERED, False),
        (PortState.PROHIBITED, False),
        (PortState.REJECTED, False),
    ],
)
def test_only_open_closed_and_arrived_prove_reachability(
    state: PortState, reachable: bool
) -> None:
    """A RST from beyond the boundary counts; silence, ICMP and forged RSTs do not."""
    assert state.reachable is reachable
