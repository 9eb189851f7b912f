"""The coordinator's state directory and its Ed25519 signing key.

The key is the PEM file named by ``SEGSCAN_SIGNING_KEY``; without it, one is
made at first use under the state directory (``SEGSCAN_STATE_DIR``, else the
XDG state home), with its public half beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.errors import UsageError
from protocol.signing import SignatureError, generate_key, load_private_key

log = structlog.get_logger(__name__)

KEY_FILE = "coordinator-signing.pem"


def state_dir() -> Path:
    """Where the coordinator keeps files that outlive a process."""
    if explicit := os.environ.get("SEGSCAN_STATE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")

    return Path(xdg) / "segscan"


def signing_key_path() -> Path:
    """The private key file the coordinator signs with."""
    if explicit := os.environ.get("SEGSCAN_SIGNING_KEY"):
        return Path(explicit)

    return state_dir() / KEY_FILE


def signing_key() -> Ed25519PrivateKey:
    """The coordinator's private key, made on first use when none is configured."""
    path = signing_key_path()
    if not path.exists() and "SEGSCAN_SIGNING_KEY" not in os.environ:
        log.info("signing_key_generated", path=str(path))
        return generate_key(path)
    try:
        return load_private_key(path)
    except SignatureError as exc:
        raise UsageError(str(path), str(exc).removeprefix(f"{path}: ")) from exc
