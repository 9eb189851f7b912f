"""The coordinator's signer: the key ``SEGSCAN_SIGNING_KEY`` names.

On AWS that is the ARN of the Ed25519 KMS key (alias/segscan-assignments) and
the private half never leaves KMS; elsewhere it is a PEM file, made at first
use in the state directory when unset (coordinator/keys.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from coordinator import keys
from coordinator.errors import UsageError
from protocol.signer import FileSigner, Signer, kms_region, open_signer
from protocol.signing import SignatureError


@contextlib.asynccontextmanager
async def open_coordinator_signer() -> AsyncIterator[Signer]:
    """The coordinator's signer; raise ``UsageError`` when its key is unusable."""
    ref = os.environ.get("SEGSCAN_SIGNING_KEY", "").strip()
    if kms_region(ref) is None:
        yield FileSigner(keys.signing_key())
        return
    exits = contextlib.AsyncExitStack()
    try:
        signer = await exits.enter_async_context(open_signer(ref))
    except SignatureError as exc:
        await exits.aclose()
        raise UsageError("SEGSCAN_SIGNING_KEY", str(exc)) from exc
    async with exits:
        yield signer
