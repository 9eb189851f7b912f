"""Approved scopes: what the agents of some subnets may ever be asked to scan.

A scope is a YAML file written and signed by whoever owns the segmentation,
not by the coordinator (DESIGN.md, "Trust model", point 3)::

    version: 1
    subnets: [corp-a, corp-b]          # the source subnets it binds
    max_rate_pps: 20000
    destinations:
      - {cidr: 10.0.0.0/16, tcp: 1-65535, udp: [53, 123]}

Its signature sits beside it in ``<file>.sig``, one line: the signing key's id
and the base64 signature of the file's exact bytes (``Context.SCOPE``).  A
scope is parsed only after its signature verified.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Annotated, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.documents import Document, DocumentError, parse_document
from protocol.envelope import Context, signing_input
from protocol.ports import PortRanges, format_ports, parse_ports
from protocol.signer import Signer
from protocol.signing import SignatureError, key_id, verify

SCOPE_VERSION = 1
MAX_SCOPE_BYTES = 1024 * 1024
SIGNATURE_SUFFIX = ".sig"


@dataclass(frozen=True)
class Destination:
    """Addresses the scope allows, and on which ports."""

    network: IPv4Network
    tcp: PortRanges
    udp: PortRanges


@dataclass(frozen=True)
class Scope:
    """An approved scope, read from ``source``."""

    source: str
    subnets: tuple[str, ...]
    max_rate_pps: int
    destinations: tuple[Destination, ...]


class _DestinationDoc(msgspec.Struct, forbid_unknown_fields=True):
    cidr: str
    tcp: Any = None
    udp: Any = None


class _ScopeDoc(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    subnets: Annotated[list[str], msgspec.Meta(min_length=1)]
    max_rate_pps: Annotated[int, msgspec.Meta(ge=1)]
    destinations: Annotated[list[_DestinationDoc], msgspec.Meta(min_length=1)]


def parse_scope(text: str, name: str = "<string>") -> Scope:
    """The scope in YAML ``text``; raise ``DocumentError`` naming file and line."""
    doc = parse_document(text, name)
    if doc.data.get("version") != SCOPE_VERSION:
        raise doc.error(
            f"unsupported scope version {doc.data.get('version')!r} "
            f"(this build reads version {SCOPE_VERSION})",
            "version",
        )
    raw = doc.convert(_ScopeDoc)
    for i, subnet in enumerate(raw.subnets):
        if not subnet.strip():
            raise doc.error("a subnet name cannot be empty", "subnets", i)

    return Scope(
        source=name,
        subnets=tuple(raw.subnets),
        max_rate_pps=raw.max_rate_pps,
        destinations=tuple(
            _destination(doc, i, d) for i, d in enumerate(raw.destinations)
        ),
    )


def _destination(doc: Document, i: int, raw: _DestinationDoc) -> Destination:
    try:
        network = ip_network(raw.cidr)
    except ValueError as exc:
        raise doc.error(f"bad CIDR {raw.cidr!r}: {exc}", "destinations", i) from exc
    if not isinstance(network, IPv4Network):
        raise doc.error(f"{raw.cidr!r} is not IPv4", "destinations", i, "cidr")
    if raw.tcp is None and raw.udp is None:
        raise doc.error("a destination needs tcp or udp ports", "destinations", i)

    return Destination(
        network,
        _ports(doc, raw.tcp, "destinations", i, "tcp"),
        _ports(doc, raw.udp, "destinations", i, "udp"),
    )


def _ports(doc: Document, value: object, *keys: str | int) -> PortRanges:
    if value is None:
        return ()
    try:
        return parse_ports(value)
    except ValueError as exc:
        raise doc.error(str(exc), *keys) from exc


# --- signatures -------------------------------------------------------------


def signature_path(path: Path) -> Path:
    """Where the signature of the scope file ``path`` lives."""
    return path.with_name(path.name + SIGNATURE_SUFFIX)


async def sign_scope(path: Path, signer: Signer) -> Path:
    """Check the scope file ``path`` parses, sign it, write its ``.sig``."""
    data = _read(path)
    parse_scope(data.decode("utf-8", errors="replace"), str(path))
    signature = await signer.sign(signing_input(Context.SCOPE, data))
    out = signature_path(path)
    out.write_text(signature_line(signer.key_id, signature), encoding="ascii")

    return out


def signature_line(signer_id: str, signature: bytes) -> str:
    """The text of a ``.sig`` file."""
    return f"{signer_id} {base64.b64encode(signature).decode()}\n"


def verify_scope(path: Path, owner: Ed25519PublicKey) -> Scope:
    """The scope in ``path`` once its signature by ``owner`` verified.

    Raise ``SignatureError`` about a missing, malformed or wrong signature and
    ``DocumentError`` about a scope that does not parse (file and line).
    """
    data = _read(path)
    signer_id, signature = _read_signature(signature_path(path))
    if signer_id != key_id(owner):
        raise SignatureError(
            str(path), f"signed by key {signer_id}, not the owner's {key_id(owner)}"
        )
    verify(owner, signature, signing_input(Context.SCOPE, data), str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(str(path), None, f"not UTF-8: {exc}") from exc

    return parse_scope(text, str(path))


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SCOPE_BYTES + 1)
    except OSError as exc:
        raise DocumentError(str(path), None, f"cannot read: {exc.strerror}") from exc
    if len(data) > MAX_SCOPE_BYTES:
        raise DocumentError(str(path), None, f"larger than {MAX_SCOPE_BYTES} bytes")

    return data


def _read_signature(path: Path) -> tuple[str, bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(str(path), f"cannot read the signature: {exc}") from exc
    parts = text.split()
    try:
        if len(parts) != 2:
            raise ValueError("expected 'KEY_ID BASE64_SIGNATURE'")
        signature = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SignatureError(str(path), f"malformed signature file: {exc}") from exc

    return parts[0], signature


def describe(scope: Scope) -> list[str]:
    """The scope in a few readable lines."""
    lines = [
        f"subnets: {', '.join(scope.subnets)}",
        f"max rate: {scope.max_rate_pps} pps",
    ]
    for d in scope.destinations:
        tcp = format_ports(d.tcp) or "-"
        udp = format_ports(d.udp) or "-"
        lines.append(f"destination {d.network}: tcp {tcp}, udp {udp}")

    return lines
