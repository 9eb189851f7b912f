"""Who signs: a private key in a PEM file, or an Ed25519 key held in AWS KMS.

Both sides sign through the same ``Signer`` interface: the coordinator its
assignments, agents their results, the segmentation owner the scopes.  A key
reference that is a KMS key or alias ARN, or an alias name (``alias/NAME``, in
the caller's own account and ``AWS_DEFAULT_REGION``), signs with ``kms:Sign``
(algorithm ED25519_SHA_512, message type RAW); anything else is a PEM file path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol.signing import SignatureError, key_id, load_private_key

# arn:PARTITION:kms:REGION:ACCOUNT:key/ID or .../alias/NAME (AWS KMS Developer
# Guide, "Key identifiers").
_KMS_ARN = re.compile(
    r"arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:(key|alias)/.+"
)
# An alias name: letters, digits, '/', '_' and '-' (AWS KMS API Reference,
# CreateAlias).  A PEM path has a dot in it, so the two are never confused.
_ALIAS_NAME = re.compile(r"alias/[A-Za-z0-9/_-]+")
# KMS signs at most 4096 bytes with MessageType RAW; envelopes sign a digest.
KMS_MAX_MESSAGE_BYTES = 4096
KMS_ENDPOINT_ENV = "SEGSCAN_KMS_ENDPOINT"  # a stand-in KMS, for tests only

_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=10,
)


class MissingKeyError(SignatureError):
    """KMS has no key by this reference (perhaps not made yet)."""


class Signer(Protocol):
    """Something that signs with one Ed25519 key and names that key."""

    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    async def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class FileSigner:
    """Signs with a private key held in this process."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    async def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


class KmsSigner:
    """Signs with an Ed25519 KMS key; the private half never leaves KMS."""

    def __init__(self, arn: str, client: Any, public_key: Ed25519PublicKey) -> None:
        self.arn = arn
        self._client = client
        self._public_key = public_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public_key

    @property
    def key_id(self) -> str:
        return key_id(self._public_key)

    async def sign(self, data: bytes) -> bytes:
        """The signature of ``data``; raise ``SignatureError`` naming the key."""
        if len(data) > KMS_MAX_MESSAGE_BYTES:
            raise SignatureError(
                self.arn, f"{len(data)} bytes, over KMS's {KMS_MAX_MESSAGE_BYTES}"
            )
        async with _translated(self.arn, "kms:Sign"):
            reply = await self._client.sign(
                KeyId=self.arn,
                Message=data,
                MessageType="RAW",
                SigningAlgorithm="ED25519_SHA_512",
            )

        return bytes(reply["Signature"])


def kms_region(ref: str) -> str | None:
    """The region of a KMS key or alias ARN; None when ``ref`` is not one."""
    match = _KMS_ARN.fullmatch(ref)

    return match["region"] if match else None


def is_kms_ref(ref: str) -> bool:
    """Whether ``ref`` names a KMS key (an ARN or an alias name), not a file."""
    return kms_region(ref) is not None or _ALIAS_NAME.fullmatch(ref) is not None


@contextlib.asynccontextmanager
async def open_signer(ref: str) -> AsyncIterator[Signer]:
    """The signer for key reference ``ref`` (a KMS key or a PEM path).

    Raise ``SignatureError`` naming ``ref`` when the key cannot be used.
    """
    if not is_kms_ref(ref):
        yield FileSigner(load_private_key(Path(ref)))
        return
    async with _kms_client(_region(ref)) as client:
        yield KmsSigner(ref, client, await _kms_public_key(ref, client))


async def kms_public_keys(refs: Iterable[str]) -> dict[str, Ed25519PublicKey]:
    """The public key of each KMS key reference in ``refs`` that KMS knows.

    A reference KMS has no key for is left out: its key may not be made yet.
    Any other failure raises ``SignatureError`` naming the reference.
    """
    by_region: dict[str, list[str]] = defaultdict(list)
    for ref in refs:
        if not is_kms_ref(ref):
            raise SignatureError(ref, "not a KMS key or alias")
        by_region[_region(ref)].append(ref)
    found: dict[str, Ed25519PublicKey] = {}
    for region, group in sorted(by_region.items()):
        async with _kms_client(region) as client:
            for ref in group:
                with contextlib.suppress(MissingKeyError):
                    found[ref] = await _kms_public_key(ref, client)

    return found


def _region(ref: str) -> str:
    """The ARN's region, or for an alias name the caller's own."""
    region = kms_region(ref) or os.environ.get("AWS_DEFAULT_REGION", "").strip()
    if not region:
        raise SignatureError(ref, "an alias name needs AWS_DEFAULT_REGION set")

    return region


@contextlib.asynccontextmanager
async def _kms_client(region: str) -> AsyncIterator[Any]:
    endpoint = os.environ.get(KMS_ENDPOINT_ENV) or None
    async with get_session().create_client(
        "kms", region_name=region, endpoint_url=endpoint, config=_BOTO_CONFIG
    ) as client:
        yield client


async def _kms_public_key(arn: str, client: Any) -> Ed25519PublicKey:
    async with _translated(arn, "kms:GetPublicKey"):
        reply = await client.get_public_key(KeyId=arn)
    try:
        key = serialization.load_der_public_key(bytes(reply["PublicKey"]))
    except ValueError as exc:
        raise SignatureError(arn, f"KMS sent an unreadable public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(arn, f"not an Ed25519 key ({reply.get('KeySpec')})")

    return key


@contextlib.asynccontextmanager
async def _translated(arn: str, action: str) -> AsyncIterator[None]:
    """Turn what botocore raises into a ``SignatureError`` about ``arn``."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', '?')}: {error.get('Message', exc)}"
        if error.get("Code") == "NotFoundException":
            raise MissingKeyError(arn, f"{action} failed: {detail}") from exc
        raise SignatureError(arn, f"{action} failed: {detail}") from exc
    except (BotoCoreError, OSError) as exc:
        raise SignatureError(arn, f"{action} failed: {exc}") from exc
