"""Approved scope files: parsing with file:line errors, signing and verifying."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.documents import DocumentError
from protocol.ports import format_ports
from protocol.scope import (
    describe,
    parse_scope,
    sign_scope,
    signature_path,
    verify_scope,
)
from protocol.signer import FileSigner
from protocol.signing import SignatureError

PROPERTY = settings(max_examples=150, deadline=None, database=None)
GOOD = """\
version: 1
subnets: [corp-a, corp-b]
max_rate_pps: 20000
destinations:
  - {cidr: 10.0.0.0/16, tcp: 1-65535, udp: [53, 123]}
  - cidr: 10.1.0.0/24
    tcp: "22,443,8000-8100"
"""


def test_a_scope_parses_into_networks_ports_and_a_rate() -> None:
    scope = parse_scope(GOOD, "corp.yaml")

    assert scope.subnets == ("corp-a", "corp-b")
    assert scope.max_rate_pps == 20000
    assert [(str(d.network), d.tcp, d.udp) for d in scope.destinations] == [
        ("10.0.0.0/16", ((1, 65535),), ((53, 53), (123, 123))),
        ("10.1.0.0/24", ((22, 22), (443, 443), (8000, 8100)), ()),
    ]
    assert describe(scope)[2] == "destination 10.0.0.0/16: tcp 1-65535, udp 53,123"


@pytest.mark.parametrize(
    ("old", "new", "line", "complaint"),
    [
        ("version: 1", "version: 2", 1, "unsupported scope version 2"),
        ("10.1.0.0/24", "10.1.0.0/33", 6, "bad CIDR '10.1.0.0/33'"),
        ("10.1.0.0/24", "10.1.0.1/24", 6, "has host bits set"),
        ("10.1.0.0/24", "::/0", 6, "is not IPv4"),
        ('"22,443,8000-8100"', '"22,0"', 7, "ports run 1-65535"),
        ("max_rate_pps: 20000", "max_rate_pps: 0", 3, "Expected `int` >= 1"),
        ("subnets: [corp-a, corp-b]", "subnets: []", 2, "length >= 1"),
        ("    tcp:", "    proto: tcp\n    tcp:", 6, "unknown field `proto`"),
        ("udp: [53, 123]", "udp: [53, 123]]", 5, "invalid YAML"),
    ],
)
def test_a_malformed_scope_is_reported_with_file_and_line(
    old: str, new: str, line: int, complaint: str
) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_scope(GOOD.replace(old, new, 1), "corp.yaml")

    assert caught.value.path == "corp.yaml"
    assert caught.value.line == line
    assert complaint in caught.value.message


def test_a_destination_needs_ports() -> None:
    text = GOOD.replace('    tcp: "22,443,8000-8100"\n', "")

    with pytest.raises(DocumentError, match="needs tcp or udp ports") as caught:
        parse_scope(text, "s.yaml")

    assert caught.value.line == 6


def _write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture
def scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "corp.yaml"
    path.write_text(GOOD)
    return path


async def test_a_signed_scope_verifies_with_the_owner_key(scope_file: Path) -> None:
    owner = FileSigner(Ed25519PrivateKey.generate())

    written = await sign_scope(scope_file, owner)

    assert written == signature_path(scope_file)
    assert written.read_text().split()[0] == owner.key_id
    assert verify_scope(scope_file, owner.public_key).subnets == ("corp-a", "corp-b")


async def test_a_changed_scope_fails_its_signature(scope_file: Path) -> None:
    owner = FileSigner(Ed25519PrivateKey.generate())
    await sign_scope(scope_file, owner)
    _write(scope_file, GOOD.replace("10.1.0.0/24", "0.0.0.0/0"))

    with pytest.raises(SignatureError, match="bad signature"):
        verify_scope(scope_file, owner.public_key)


async def test_a_scope_signed_by_another_key_names_both_keys(scope_file: Path) -> None:
    owner = FileSigner(Ed25519PrivateKey.generate())
    coordinator = FileSigner(Ed25519PrivateKey.generate())
    await sign_scope(scope_file, coordinator)

    with pytest.raises(SignatureError, match="not the owner's") as caught:
        verify_scope(scope_file, owner.public_key)

    assert coordinator.key_id in str(caught.value)


@pytest.mark.parametrize("sig", [None, "", "onlyone", "kid not-base64!"])
def test_a_missing_or_malformed_signature_is_refused(
    scope_file: Path, sig: str | None
) -> None:
    if sig is not None:
        signature_path(scope_file).write_text(sig)

    with pytest.raises(SignatureError, match="signature"):
        verify_scope(scope_file, Ed25519PrivateKey.generate().public_key())


async def test_a_malformed_scope_is_never_signed(scope_file: Path) -> None:
    _write(scope_file, GOOD.replace("version: 1", "version: 7"))

    with pytest.raises(DocumentError, match=r"corp\.yaml:1: unsupported"):
        await sign_scope(scope_file, FileSigner(Ed25519PrivateKey.generate()))

    assert not signature_path(scope_file).exists()


# --- properties ---------------------------------------------------------------

networks = st.builds(
    lambda address, prefix: IPv4Network((address, prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
port_sets = st.lists(
    st.tuples(st.integers(1, 65535), st.integers(0, 300)).map(
        lambda t: (t[0], min(65535, t[0] + t[1]))
    ),
    min_size=1,
    max_size=5,
)


@PROPERTY
@given(
    st.lists(st.text("abcdefgh-", min_size=1, max_size=8), min_size=1, max_size=3),
    st.integers(1, 10**7),
    st.lists(st.tuples(networks, port_sets, port_sets), min_size=1, max_size=4),
)
def test_a_written_scope_parses_back_to_what_was_written(
    subnets: list[str],
    rate: int,
    destinations: list[
        tuple[IPv4Network, list[tuple[int, int]], list[tuple[int, int]]]
    ],
) -> None:
    from protocol.ports import merge

    lines = ["version: 1", f"subnets: [{', '.join(subnets)}]", f"max_rate_pps: {rate}"]
    lines.append("destinations:")
    for network, tcp, udp in destinations:
        tcp_text, udp_text = format_ports(merge(tcp)), format_ports(merge(udp))
        lines.append(f'  - {{cidr: {network}, tcp: "{tcp_text}", udp: "{udp_text}"}}')

    scope = parse_scope("\n".join(lines) + "\n", "p.yaml")

    assert scope.subnets == tuple(subnets)
    assert scope.max_rate_pps == rate
    assert [(d.network, d.tcp, d.udp) for d in scope.destinations] == [
        (n, merge(t), merge(u)) for n, t, u in destinations
    ]


@PROPERTY
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_document_error(text: str) -> None:
    try:
        parse_scope(text, "fuzz.yaml")
    except DocumentError as exc:
        error = exc
    else:
        return
    assert error.path == "fuzz.yaml"
