"""Errors of the wire layer.

ProtocolError        bytes that are not a valid message of the expected kind
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that could not be decoded into the message expected."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"invalid {kind} message: {detail}")
        self.kind = kind
        self.detail = detail
