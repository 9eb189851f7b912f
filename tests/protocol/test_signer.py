"""Signers: a PEM key in this process, and KMS, here a stand-in on loopback.

moto (5.x) has no Ed25519 KMS keys, so the KMS signer is tested against a
small stand-in that speaks KMS's JSON protocol (Sign, GetPublicKey) and signs
with a real Ed25519 key: aiobotocore, the request shapes and the signature are
real; KMS's own service is not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import envelope
from protocol.envelope import Context
from protocol.signer import (
    KMS_ENDPOINT_ENV,
    KMS_MAX_MESSAGE_BYTES,
    FileSigner,
    kms_region,
    open_signer,
)
from protocol.signing import SignatureError, generate_key, key_id, verify

ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


class KmsStandIn:
    """Answers kms:Sign and kms:GetPublicKey for one Ed25519 key."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.deny = False

    async def handle(self, request: web.Request) -> web.Response:
        action = request.headers["X-Amz-Target"].removeprefix("TrentService.")
        body = json.loads(await request.read())
        self.requests.append((action, body))
        if self.deny:
            return _error("AccessDeniedException", "not allowed to sign", 400)
        if action == "GetPublicKey":
            der = self.key.public_key().public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            return _json(
                {
                    "KeyId": body["KeyId"],
                    "PublicKey": base64.b64encode(der).decode(),
                    "KeySpec": "ECC_NIST_EDWARDS25519",
                    "KeyUsage": "SIGN_VERIFY",
                    "SigningAlgorithms": ["ED25519_SHA_512"],
                }
            )
        if (
            body.get("SigningAlgorithm") != "ED25519_SHA_512"
            or body.get("MessageType") != "RAW"
        ):
            return _error("ValidationException", "wrong algorithm", 400)
        signature = self.key.sign(base64.b64decode(body["Message"]))
        return _json(
            {
                "KeyId": body["KeyId"],
                "Signature": base64.b64encode(signature).decode(),
                "SigningAlgorithm": "ED25519_SHA_512",
            }
        )


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(), content_type="application/x-amz-json-1.1"
    )


def _error(code: str, message: str, status: int) -> web.Response:
    body = {"__type": code, "message": message}
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        content_type="application/x-amz-json-1.1",
    )


@pytest.fixture
async def kms(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KmsStandIn]:
    stand_in = KmsStandIn()
    app = web.Application()
    app.router.add_post("/", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    monkeypatch.setenv(KMS_ENDPOINT_ENV, f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "segscan-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "segscan-test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield stand_in
    finally:
        await runner.cleanup()


async def test_a_file_signer_signs_what_its_public_key_verifies(tmp_path: Path) -> None:
    key = generate_key(tmp_path / "k.pem")

    async with open_signer(str(tmp_path / "k.pem")) as signer:
        signature = await signer.sign(b"data")

    assert isinstance(signer, FileSigner)
    assert signer.key_id == key_id(key.public_key())
    verify(key.public_key(), signature, b"data", "k")


async def test_a_missing_key_file_is_a_signature_error_naming_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(SignatureError, match="cannot load private key"):
        async with open_signer(str(tmp_path / "none.pem")):
            pass


async def test_a_kms_signer_signs_envelopes_agents_verify_offline(
    kms: KmsStandIn,
) -> None:
    async with open_signer(ARN) as signer:
        sealed = await envelope.seal(b"payload", Context.ASSIGNMENT, signer)

    signed = envelope.open_envelope(sealed, 1024)
    public = kms.key.public_key()
    assert signer.key_id == key_id(public)
    assert envelope.check(signed, Context.ASSIGNMENT, {key_id(public): public})
    assert [action for action, _ in kms.requests] == ["GetPublicKey", "Sign"]
    assert kms.requests[1][1]["KeyId"] == ARN


async def test_kms_refusing_to_sign_is_a_signature_error(kms: KmsStandIn) -> None:
    async with open_signer(ARN) as signer:
        kms.deny = True
        with pytest.raises(SignatureError, match="AccessDeniedException") as caught:
            await signer.sign(b"x")

    assert caught.value.subject == ARN


async def test_kms_is_never_asked_to_sign_more_than_it_takes(kms: KmsStandIn) -> None:
    async with open_signer(ARN) as signer:
        with pytest.raises(SignatureError, match="over KMS's 4096"):
            await signer.sign(b"x" * (KMS_MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    ("ref", "region"),
    [
        (ARN, "eu-west-1"),
        ("arn:aws:kms:us-east-1:123456789012:alias/segscan-assignments", "us-east-1"),
        ("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/x", "us-gov-west-1"),
        ("/etc/segscan/keys/coordinator.pem", None),
        ("arn:aws:s3:::bucket", None),
    ],
)
def test_kms_arns_are_told_from_paths(ref: str, region: str | None) -> None:
    assert kms_region(ref) == region
