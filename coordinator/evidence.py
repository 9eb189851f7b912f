"""The evidence bundle: a run's raw results, policy, scope and reports, sealed by a
manifest of SHA-256 digests that the coordinator signs with Ed25519.

PCI DSS 11.4.5 asks for the segmentation test's results to be kept; the
manifest lets an assessor check, file by file, that nothing was altered or
removed since the coordinator wrote it.  A bundle is a plain directory::

    manifest.json  manifest.sig  coordinator.pub
    policy.yaml  scope.json  results/  assignments/  report/
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.signer import Signer
from protocol.signing import SignatureError, key_id, public_pem, verify
from protocol.signing import load_public_key as _load_public_key

BUNDLE_FORMAT = "segscan-evidence-1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "coordinator.pub"
UNLISTED = frozenset({MANIFEST, SIGNATURE})
# The same form as protocol/envelope.py's contexts, with one of its own.
SIGNING_PREFIX = b"segscan-v1 evidence\n"


@dataclass(frozen=True)
class Verification:
    """The outcome of checking a bundle: ``problems`` name the files at fault."""

    bundle: str
    key_id: str | None
    key_from_bundle: bool  # integrity only: anyone can re-sign with a new key
    files: int
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(
    files: Mapping[str, bytes], run_id: str, key: Ed25519PublicKey, tool: str
) -> bytes:
    """The manifest text listing every file's digest and size."""
    body = {
        "format": BUNDLE_FORMAT,
        "run": run_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": tool,
        "key_id": key_id(key),
        "files": [
            {"path": path, "sha256": digest(data), "bytes": len(data)}
            for path, data in sorted(files.items())
        ],
    }

    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


async def seal(
    files: Mapping[str, bytes], run_id: str, signer: Signer, tool: str
) -> dict[str, bytes]:
    """``files`` (relative path -> bytes) with the key, manifest and signature
    added: the whole bundle, ready to be written."""
    public = signer.public_key
    listed = {**files, PUBLIC_KEY: public_pem(public)}
    text = manifest(listed, run_id, public, tool)
    signature = base64.b64encode(await signer.sign(signing_input(text))) + b"\n"

    return {**listed, MANIFEST: text, SIGNATURE: signature}


def signing_input(manifest_text: bytes) -> bytes:
    """What the signature covers: a digest, so that KMS (4096 bytes at most) can
    sign any manifest, behind a prefix no other segscan signature uses."""
    return SIGNING_PREFIX + hashlib.sha512(manifest_text).digest()


def verify_bundle(directory: Path, public_key: Path | None = None) -> Verification:
    """Check signature, digests and completeness; name every file at fault."""
    problems: list[str] = []
    try:
        text = (directory / MANIFEST).read_bytes()
    except OSError:
        return Verification(str(directory), None, False, 0, (f"missing: {MANIFEST}",))
    key, from_bundle, key_problem = _key(directory, public_key)
    if key_problem:
        problems.append(key_problem)
    body = _parse(text, problems)
    if key is not None:
        problems += _signature(directory, text, key)
        named = str(body.get("key_id", ""))
        if from_bundle and named and named != key_id(key):
            problems.append(f"altered: {PUBLIC_KEY} (not the key the manifest names)")
    listed = body.get("files", [])
    problems += _files(directory, listed)

    return Verification(
        str(directory),
        key_id(key) if key else None,
        from_bundle,
        len(listed),
        tuple(problems),
    )


def _key(
    directory: Path, explicit: Path | None
) -> tuple[Ed25519PublicKey | None, bool, str]:
    path = explicit or directory / PUBLIC_KEY
    try:
        return _load_public_key(path), explicit is None, ""
    except SignatureError:
        name = str(explicit) if explicit else PUBLIC_KEY
        state = "missing" if not path.exists() else "altered"

        return None, explicit is None, f"{state}: {name} (not a usable Ed25519 key)"


def _parse(text: bytes, problems: list[str]) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("files"), list):
        problems.append(f"altered: {MANIFEST} (not a bundle manifest)")
        return {}

    return body


def _signature(directory: Path, text: bytes, key: Ed25519PublicKey) -> list[str]:
    try:
        encoded = (directory / SIGNATURE).read_bytes().strip()
        signature = base64.b64decode(encoded, validate=True)
    except OSError:
        return [f"missing: {SIGNATURE}"]
    except ValueError:
        return [f"altered: {SIGNATURE} (not base64)"]
    try:
        verify(key, signature, signing_input(text), MANIFEST)
    except SignatureError:
        return [
            f"altered: {MANIFEST} or {SIGNATURE} (the signature does not verify "
            f"with key {key_id(key)})"
        ]

    return []


def _files(directory: Path, listed: list[Any]) -> list[str]:
    problems = []
    expected = set()
    for entry in listed:
        path = str(entry.get("path", "")) if isinstance(entry, dict) else ""
        try:
            target = directory / safe(path)
        except ValueError:
            problems.append(f"altered: {MANIFEST} (bad path {path!r})")
            continue
        expected.add(path)
        try:
            data = target.read_bytes()
        except OSError:
            problems.append(f"missing: {path}")
            continue
        if digest(data) != entry.get("sha256"):
            problems.append(f"altered: {path}")
    for found in sorted(directory.rglob("*")):
        name = found.relative_to(directory).as_posix()
        if found.is_file() and name not in expected | UNLISTED:
            problems.append(f"unexpected: {name}")

    return problems


def safe(path: str) -> PurePosixPath:
    """A bundle path that stays inside the bundle."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"unsafe bundle path {path!r}")

    return pure
