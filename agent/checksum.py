"""The Internet checksum (RFC 1071): sums of 16-bit words, folded and inverted."""

from __future__ import annotations

import struct


def word_sum(data: bytes) -> int:
    """The plain sum of ``data``'s big-endian 16-bit words (odd tail padded)."""
    if len(data) % 2:
        data += b"\x00"

    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def finish(total: int) -> int:
    """Fold a word sum to 16 bits and invert it: the checksum to write."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)

    return ~total & 0xFFFF
