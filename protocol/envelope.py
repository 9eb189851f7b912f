"""Signed envelopes: every message between agents and coordinator travels in one.

An envelope holds the message's msgpack bytes untouched, the id of the key
that signed them and the Ed25519 signature.  The receiver checks size, then
the key, then the signature over those exact bytes, and only then decodes the
payload (DESIGN.md, "Trust model").  The signature covers a domain-separated
digest, ``segscan-v1 <context>\\n`` + SHA-512(payload): an assignment's
signature cannot be passed off as a result's, and KMS, which signs at most
4096 bytes, can sign a payload of any size.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Annotated

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.errors import ProtocolError
from protocol.signer import Signer
from protocol.signing import SignatureError, verify

ENVELOPE_VERSION = 1
SIGNATURE_BYTES = 64  # RFC 8032, section 5.1.6
KEY_ID_MAX_CHARS = 64


class Context(enum.StrEnum):
    """What a signature is for; part of what is signed."""

    ASSIGNMENT = "assignment"
    RESULT = "result"
    HEARTBEAT = "heartbeat"
    REFUSAL = "refusal"
    SIGHTING = "sighting"
    SCOPE = "scope"


class UnknownKeyError(SignatureError):
    """A signature by a key the receiver does not trust at all."""


class Signed(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="signed"):
    """A payload, the id of the key that signed it, and the signature."""

    payload: bytes
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=KEY_ID_MAX_CHARS)]
    signature: Annotated[
        bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)
    ]
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        if self.version != ENVELOPE_VERSION:
            raise ValueError(
                f"unsupported envelope version {self.version} "
                f"(this build speaks {ENVELOPE_VERSION})"
            )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Signed)


def signing_input(context: Context, payload: bytes) -> bytes:
    """The bytes a signer signs for ``payload`` in ``context``."""
    return f"segscan-v1 {context}\n".encode() + hashlib.sha512(payload).digest()


async def seal(payload: bytes, context: Context, signer: Signer) -> bytes:
    """``payload`` signed by ``signer``, as envelope bytes."""
    signature = await signer.sign(signing_input(context, payload))

    return _encoder.encode(Signed(payload, signer.key_id, signature))


def open_envelope(data: bytes, max_bytes: int) -> Signed:
    """The envelope in ``data``, unverified; raise ``ProtocolError`` if it is not
    one or is larger than ``max_bytes``."""
    if len(data) > max_bytes:
        raise ProtocolError("envelope", f"{len(data)} bytes, over {max_bytes}")
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError("envelope", str(exc)) from exc


def check(
    envelope: Signed, context: Context, keys: Mapping[str, Ed25519PublicKey]
) -> str:
    """The id of the trusted key that signed ``envelope`` for ``context``.

    Raise ``UnknownKeyError`` when the key is not in ``keys`` and
    ``SignatureError`` when the signature does not verify.
    """
    public = keys.get(envelope.key)
    if public is None:
        raise UnknownKeyError(envelope.key, "signed by a key that is not trusted here")
    verify(
        public,
        envelope.signature,
        signing_input(context, envelope.payload),
        envelope.key,
    )

    return envelope.key
