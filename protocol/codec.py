"""Encode and strictly decode wire messages as msgpack.

SQS bodies must be text, so queue messages carry the msgpack bytes in base64.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar, cast

import msgspec

from protocol.errors import ProtocolError
from protocol.messages import (
    Assignment,
    Heartbeat,
    Message,
    Refusal,
    Result,
    Sighting,
)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {
    cls: msgspec.msgpack.Decoder(cls)
    for cls in (Assignment, Result, Heartbeat, Refusal, Sighting)
}

M = TypeVar("M", Assignment, Result, Heartbeat, Refusal, Sighting)


def encode(message: Message) -> bytes:
    """The message as msgpack bytes."""
    return _encoder.encode(message)


def decode(data: bytes, kind: type[M]) -> M:
    """Decode ``data`` as a ``kind`` message; raise ``ProtocolError`` otherwise."""
    name = kind.__name__.lower()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(name, f"{len(data)} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        return cast(M, _decoders[kind].decode(data))
    except msgspec.DecodeError as exc:
        raise ProtocolError(name, str(exc)) from exc


def to_text(data: bytes) -> str:
    """Bytes as a text-safe queue body."""
    return base64.b64encode(data).decode("ascii")


def from_text(body: str) -> bytes:
    """The bytes inside a queue body; raise ``ProtocolError`` if it is not base64."""
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("queue", f"body is not base64: {exc}") from exc
