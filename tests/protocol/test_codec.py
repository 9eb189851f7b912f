"""Strict decoding of wire messages and the base64 form of queue bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import (
    Assignment,
    Coverage,
    Finding,
    Heartbeat,
    PortState,
    Proto,
    Reason,
    Result,
)

PROPERTY = settings(max_examples=150, deadline=None, database=None)

ASSIGNMENT = Assignment(
    id="a1",
    run_id="run-1",
    src="corp-a",
    dst="cde-a",
    targets=("10.0.1.0/28",),
    tcp=((1, 1024),),
    udp=(),
    rate_pps=1000,
    passes=2,
    issued_at=10.0,
    expires_at=3610.0,
)
RESULT = Result(
    assignment_id="a1",
    run_id="run-1",
    src="corp-a",
    dst="cde-a",
    agent="corp-a@host",
    engine="syn",
    started_at=11.0,
    finished_at=12.0,
    coverage=Coverage(planned=14336, sent=14336, answered=1, passes=2),
    findings=(
        Finding("10.0.1.5", Proto.TCP, ((443, 443),), PortState.OPEN, Reason.SYN_ACK),
    ),
)


def _raw(message: Assignment | Result | Heartbeat) -> dict[str, Any]:
    """The message as plain, mutable msgpack data."""
    raw: dict[str, Any] = msgspec.msgpack.decode(codec.encode(message))

    return raw


def _encode(raw: object) -> bytes:
    return msgspec.msgpack.encode(raw)


def test_decode_rejects_unknown_fields() -> None:
    """Assignments are closed structs: an extra field may be a smuggled command."""
    raw = _raw(ASSIGNMENT) | {"command": "rm -rf /"}

    with pytest.raises(ProtocolError, match="unknown field `command`"):
        codec.decode(_encode(raw), Assignment)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_pps", "fast"),
        ("targets", "10.0.1.0/28"),
        ("tcp", [[1, "x"]]),
        ("kind", "nmap"),
        ("passes", 2.5),
    ],
)
def test_decode_rejects_wrong_types(field: str, value: object) -> None:
    raw = _raw(ASSIGNMENT) | {field: value}

    with pytest.raises(ProtocolError, match=f"invalid assignment message: .*{field}"):
        codec.decode(_encode(raw), Assignment)


def test_decode_rejects_a_missing_field() -> None:
    raw = _raw(ASSIGNMENT)
    del raw["expires_at"]

    with pytest.raises(ProtocolError, match="expires_at"):
        codec.decode(_encode(raw), Assignment)


@pytest.mark.parametrize("version", [0, 2, 99])
def test_decode_rejects_an_unknown_version_saying_so(version: int) -> None:
    raw = _raw(RESULT) | {"version": version}

    with pytest.raises(ProtocolError) as info:
        codec.decode(_encode(raw), Result)

    assert f"unsupported protocol version {version}" in str(info.value)
    assert info.value.kind == "result"


def test_decode_rejects_a_result_posted_where_an_assignment_is_expected() -> None:
    with pytest.raises(ProtocolError, match="invalid assignment message") as info:
        codec.decode(codec.encode(RESULT), Assignment)

    assert "result" in info.value.detail


def test_decode_rejects_oversized_input_before_parsing() -> None:
    data = b"\xc0" * (codec.MAX_MESSAGE_BYTES + 1)

    with pytest.raises(ProtocolError, match=f"over {codec.MAX_MESSAGE_BYTES}"):
        codec.decode(data, Result)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"not msgpack", _encode([1, 2, 3])])
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid heartbeat message"):
        codec.decode(data, Heartbeat)


def test_queue_body_round_trips_through_base64_text() -> None:
    body = codec.to_text(codec.encode(ASSIGNMENT))

    assert body.isascii()
    assert codec.decode(codec.from_text(body), Assignment) == ASSIGNMENT


@pytest.mark.parametrize("body", ["not base64!", "abc", "aGVsbG8=\n!", "données"])
def test_from_text_rejects_bodies_that_are_not_base64(body: str) -> None:
    with pytest.raises(
        ProtocolError, match="invalid queue message: body is not base64"
    ):
        codec.from_text(body)


@pytest.mark.parametrize(
    ("finding", "coverage"),
    [
        ({"ports": [[0, 70000]]}, {}),
        ({"ports": [[443, 22]]}, {}),
        ({"ports": []}, {}),
        ({"ip": "not-an-address"}, {}),
        ({}, {"sent": -5}),
    ],
    ids=["port-out-of-range", "reversed-range", "no-ports", "bad-ip", "negative"],
)
def test_decode_rejects_values_no_probe_can_produce(
    finding: dict[str, Any], coverage: dict[str, Any]
) -> None:
    raw = _raw(RESULT)
    raw["findings"][0] |= finding
    raw["coverage"] |= coverage

    with pytest.raises(ProtocolError):
        codec.decode(_encode(raw), Result)


def _mutations() -> st.SearchStrategy[bytes]:
    """Valid encodings cut short or with bytes overwritten: near-miss input."""
    valid = st.sampled_from(
        [
            codec.encode(ASSIGNMENT),
            codec.encode(RESULT),
            codec.encode(Heartbeat("a", "s", 1.0)),
        ]
    )
    cut = st.tuples(valid, st.integers(0, 400)).map(lambda t: t[0][: t[1]])
    flipped = st.tuples(valid, st.integers(0, 10_000), st.integers(0, 255)).map(
        lambda t: (
            t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1 :]
        )
    )

    return st.one_of(st.binary(max_size=300), cut, flipped)


def _outcome(call: Callable[[], object]) -> object:
    """What ``call`` returned, or the ``ProtocolError`` it raised."""
    try:
        return call()
    except ProtocolError as exc:
        return exc


@PROPERTY
@given(_mutations(), st.sampled_from([Assignment, Result, Heartbeat]))
def test_decoding_arbitrary_bytes_raises_only_protocol_error(
    data: bytes, kind: Any
) -> None:
    """Any other exception escapes ``_outcome`` and fails the test."""
    outcome = _outcome(lambda: codec.decode(data, kind))

    if isinstance(outcome, ProtocolError):
        assert outcome.kind == kind.__name__.lower()
    else:
        assert isinstance(outcome, kind)


@PROPERTY
@given(st.text(max_size=200))
def test_from_text_of_any_text_raises_only_protocol_error(body: str) -> None:
    outcome = _outcome(lambda: codec.from_text(body))

    if isinstance(outcome, ProtocolError):
        assert outcome.kind == "queue"
    else:
        assert isinstance(outcome, bytes)
        assert codec.from_text(codec.to_text(outcome)) == outcome
