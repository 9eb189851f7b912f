"""Classic BPF programs assemble with resolved jumps and end in returns."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from agent.bpf import Insn, assemble, probe_filter, reply_filter


def _decode(program: bytes) -> list[tuple[int, int, int, int]]:
    return [
        struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)
    ]


def test_labels_become_relative_jumps() -> None:
    program = assemble(
        [
            Insn(0x15, 1, jt="yes", jf="no"),
            Insn(0x06, 0, label="no"),
            Insn(0x06, 99, label="yes"),
        ]
    )

    assert _decode(program) == [(0x15, 1, 0, 1), (0x06, 0, 0, 0), (0x06, 0, 0, 99)]


def test_backward_jumps_are_refused() -> None:
    with pytest.raises(ValueError, match="jump out of range"):
        assemble([Insn(0x06, 0, label="back"), Insn(0x15, 1, jt="back")])


def test_filters_match_our_address_and_port() -> None:
    own = IPv4Address("10.0.1.4")

    reply = _decode(reply_filter(own, 40123))
    probe = _decode(probe_filter(own))

    assert (0x15, 0, 0, int(own)) in [(c, 0, 0, k) for c, _, _, k in reply]
    assert 40123 in [k for c, _, _, k in reply if c == 0x15]
    assert reply[-1][0] == probe[-1][0] == 0x06
    assert reply[-1][3] == probe[-1][3] == 0  # the last word is "drop"
