"""``coordinator scope sign``: the segmentation owner signs an approved scope.

The owner signs with their own key, never the coordinator's (DESIGN.md, "Trust
model", point 3): a PEM file, or on AWS the KMS key alias/segscan-scopes by its
ARN.  The scope is checked before it is signed, so a malformed file is
reported with its line and never signed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from coordinator.errors import EXIT_PASS, UsageError
from protocol.documents import DocumentError
from protocol.scope import sign_scope
from protocol.signer import open_signer
from protocol.signing import SignatureError


def add_commands(sub: Any) -> None:
    """Add ``scope sign`` to the ``coordinator`` command's subcommands."""
    scope = sub.add_parser("scope", help="approved scopes of the agents")
    actions = scope.add_subparsers(dest="action", required=True)
    sign = actions.add_parser("sign", help="check and sign a scope file")
    sign.add_argument("scope", type=Path, help="scope YAML file")
    sign.add_argument(
        "--key",
        required=True,
        help="the owner's private key: a PEM file or a KMS key ARN",
    )
    sign.set_defaults(handler=_sign)


async def _sign(args: argparse.Namespace) -> int:
    try:
        async with open_signer(args.key) as signer:
            written = await sign_scope(args.scope, signer)
            key = signer.key_id
    except (SignatureError, DocumentError) as exc:
        raise UsageError("", str(exc)) from exc
    print(f"{written}: signed {args.scope} with key {key}")

    return EXIT_PASS
