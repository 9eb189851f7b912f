"""Signed envelopes: strict decoding, key and signature checks, context binding."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import envelope
from protocol.envelope import Context, Signed, UnknownKeyError
from protocol.errors import ProtocolError
from protocol.signer import FileSigner
from protocol.signing import SignatureError

PROPERTY = settings(max_examples=200, deadline=None, database=None)
KEY = Ed25519PrivateKey.generate()
SIGNER = FileSigner(KEY)
KEYS = {SIGNER.key_id: SIGNER.public_key}


async def _sealed(
    payload: bytes = b"payload", context: Context = Context.RESULT
) -> bytes:
    return await envelope.seal(payload, context, SIGNER)


async def test_a_sealed_payload_opens_and_verifies() -> None:
    signed = envelope.open_envelope(await _sealed(), 1024)

    assert signed.payload == b"payload"
    assert envelope.check(signed, Context.RESULT, KEYS) == SIGNER.key_id


async def test_a_signature_made_for_one_context_fails_in_another() -> None:
    """A signed heartbeat cannot be replayed as a result."""
    signed = envelope.open_envelope(await _sealed(context=Context.HEARTBEAT), 1024)

    with pytest.raises(SignatureError, match="bad signature"):
        envelope.check(signed, Context.RESULT, KEYS)


async def test_a_changed_payload_fails_the_signature() -> None:
    signed = envelope.open_envelope(await _sealed(), 1024)
    changed = msgspec.structs.replace(signed, payload=b"payloae")

    with pytest.raises(SignatureError, match="bad signature"):
        envelope.check(changed, Context.RESULT, KEYS)


async def test_an_unknown_key_is_told_apart_from_a_bad_signature() -> None:
    stranger = FileSigner(Ed25519PrivateKey.generate())
    sealed = await envelope.seal(b"payload", Context.RESULT, stranger)

    with pytest.raises(UnknownKeyError) as caught:
        envelope.check(envelope.open_envelope(sealed, 1024), Context.RESULT, KEYS)

    assert caught.value.subject == stranger.key_id


async def test_a_key_id_naming_a_trusted_key_does_not_help_a_stranger() -> None:
    stranger = FileSigner(Ed25519PrivateKey.generate())
    sealed = await envelope.seal(b"payload", Context.RESULT, stranger)
    lying = msgspec.structs.replace(
        envelope.open_envelope(sealed, 1024), key=SIGNER.key_id
    )

    with pytest.raises(SignatureError, match="bad signature"):
        envelope.check(lying, Context.RESULT, KEYS)


@pytest.mark.parametrize("version", [0, 2, 99])
async def test_an_unknown_envelope_version_is_refused_saying_so(version: int) -> None:
    raw = msgspec.msgpack.decode(await _sealed())
    raw["version"] = version

    with pytest.raises(ProtocolError, match=f"unsupported envelope version {version}"):
        envelope.open_envelope(msgspec.msgpack.encode(raw), 1024)


@pytest.mark.parametrize(
    "change",
    [
        {"signature": b"short"},
        {"key": ""},
        {"command": "rm -rf /"},
        {"type": "result"},
        {"payload": "text, not bytes"},
    ],
    ids=["short-signature", "empty-key", "unknown-field", "wrong-tag", "payload-type"],
)
async def test_malformed_envelopes_are_refused(change: dict[str, object]) -> None:
    raw = msgspec.msgpack.decode(await _sealed()) | change

    with pytest.raises(ProtocolError, match="invalid envelope message"):
        envelope.open_envelope(msgspec.msgpack.encode(raw), 1024)


async def test_an_oversized_envelope_is_refused_before_parsing() -> None:
    data = await _sealed(b"x" * 2000)

    with pytest.raises(ProtocolError, match="over 1024"):
        envelope.open_envelope(data, 1024)


def test_the_signed_bytes_name_the_context_and_digest_the_payload() -> None:
    data = envelope.signing_input(Context.SCOPE, b"abc")

    assert data.startswith(b"segscan-v1 scope\n")
    assert len(data) == len(b"segscan-v1 scope\n") + 64


@PROPERTY
@given(st.binary(max_size=400))
def test_opening_arbitrary_bytes_raises_only_protocol_error(data: bytes) -> None:
    try:
        signed = envelope.open_envelope(data, 1024)
    except ProtocolError:
        return
    assert isinstance(signed, Signed)
