"""A stand-in for AWS KMS on loopback, for the tests of KMS-held Ed25519 keys.

moto (5.x) has no Ed25519 KMS keys, so this small server speaks KMS's JSON
protocol (Sign, GetPublicKey) and signs with real Ed25519 keys, one per key
reference it was told about: aiobotocore, the request shapes and the
signatures are real; KMS's own service is not.  A reference it does not know
gets KMS's ``NotFoundException``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.signer import KMS_ENDPOINT_ENV


class KmsStandIn:
    """Answers kms:Sign and kms:GetPublicKey for the key references it holds."""

    def __init__(self, refs: Iterable[str] = ()) -> None:
        self.keys = {ref: Ed25519PrivateKey.generate() for ref in refs}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.deny = False

    async def handle(self, request: web.Request) -> web.Response:
        action = request.headers["X-Amz-Target"].removeprefix("TrentService.")
        body = json.loads(await request.read())
        self.requests.append((action, body))
        if self.deny:
            return _error("AccessDeniedException", "not allowed", 400)
        key = self.keys.get(body["KeyId"])
        if key is None:
            return _error("NotFoundException", f"{body['KeyId']} is not found", 400)
        if action == "GetPublicKey":
            return _json(_public_key_reply(body["KeyId"], key))
        if (
            body.get("SigningAlgorithm") != "ED25519_SHA_512"
            or body.get("MessageType") != "RAW"
        ):
            return _error("ValidationException", "wrong algorithm", 400)
        signature = key.sign(base64.b64decode(body["Message"]))
        return _json(
            {
                "KeyId": body["KeyId"],
                "Signature": base64.b64encode(signature).decode(),
                "SigningAlgorithm": "ED25519_SHA_512",
            }
        )


@contextlib.asynccontextmanager
async def serving(
    stand_in: KmsStandIn, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KmsStandIn]:
    """``stand_in`` listening on loopback, with the environment pointing at it."""
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


def _public_key_reply(ref: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "KeyId": ref,
        "PublicKey": base64.b64encode(der).decode(),
        "KeySpec": "ECC_NIST_EDWARDS25519",
        "KeyUsage": "SIGN_VERIFY",
        "SigningAlgorithms": ["ED25519_SHA_512"],
    }


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
