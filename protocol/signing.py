"""Ed25519 keys and signatures, the one signing scheme segscan uses.

The coordinator signs assignments and evidence manifests, agents sign results,
and the segmentation owner signs approved scopes.  Keys are PEM files here;
on AWS the coordinator's key lives in KMS and only its public half ships.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class SignatureError(ValueError):
    """A signature that does not verify, or a key that cannot be used."""

    def __init__(self, subject: str, message: str) -> None:
        super().__init__(f"{subject}: {message}")
        self.subject = subject


def generate_key(path: Path) -> Ed25519PrivateKey:
    """Make a new private key, write it (mode 0600) and its ``.pub`` beside it."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    public_path(path).write_bytes(public_pem(key.public_key()))

    return key


def public_path(private: Path) -> Path:
    """Where the public half of the key at ``private`` is kept."""
    return private.with_name(private.name + ".pub")


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; raise ``SignatureError`` naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(str(path), f"cannot load private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(str(path), "not an Ed25519 private key")

    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key; raise ``SignatureError`` naming the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(str(path), f"cannot load public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(str(path), "not an Ed25519 public key")

    return key


def key_id(key: Ed25519PublicKey) -> str:
    """A short stable name for a public key: the start of its SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    return base64.b32encode(hashlib.sha256(raw).digest()[:10]).decode().lower()


def verify(key: Ed25519PublicKey, signature: bytes, data: bytes, subject: str) -> None:
    """Raise ``SignatureError`` about ``subject`` unless ``signature`` is valid."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(subject, "bad signature") from None
