"""Keyed sequence cookies: the proof that a reply answers one of this scan's probes.

Design note: the probe to (address, port) carries ``A[address] ^ P[port]`` as
its TCP sequence number and the cookie's low 16 bits as its IP ID, where ``A``
and ``P`` are tables of random 32-bit words drawn for each scan (simple
tabulation hashing).  A SYN-ACK or RST must acknowledge cookie + 1 (RFC 9293,
3.10.7.2); an ICMP error quotes the probe's headers (RFC 792), and with them
the cookie.  Someone who never saw a probe guesses a cookie with probability
2**-32; someone on the path sees the probes and can always answer them, which
is what the witness is for.  A table lookup and an XOR cost far less than a
keyed hash per probe, and they vectorise: the sender builds a whole batch of
cookies with one big-integer XOR.
"""

from __future__ import annotations

import secrets
import sys
from array import array
from collections.abc import Sequence

PORT_SPACE = 65536
MASK32 = 0xFFFF_FFFF


def _random_words(count: int) -> array[int]:
    words = array("I")
    words.frombytes(secrets.token_bytes(4 * count))

    return words


def big_endian(words: array[int]) -> bytes:
    """32-bit words as network-order bytes."""
    if sys.byteorder == "little":
        words = array("I", words)
        words.byteswap()

    return words.tobytes()


class CookieKey:
    """The secret tables of one scan, for ``address_count`` addresses."""

    def __init__(self, address_count: int) -> None:
        self.address_words = _random_words(address_count)
        self.port_words = _random_words(PORT_SPACE)

    def cookie(self, address: int, port: int) -> int:
        """What the probe to address index ``address``, ``port`` carries."""
        return self.address_words[address] ^ self.port_words[port]

    def acknowledges(self, address: int, port: int, ack: int) -> bool:
        """Whether a TCP reply acknowledging ``ack`` answers that probe."""
        return (self.cookie(address, port) + 1) & MASK32 == ack

    def port_words_be(self, ports: Sequence[int]) -> bytes:
        """The port words of ``ports``, in that order, as network-order bytes."""
        table = self.port_words

        return big_endian(array("I", [table[port] for port in ports]))

    def address_words_be(self, addresses: Sequence[int]) -> bytes:
        """The address words of ``addresses``, in that order, network order."""
        table = self.address_words

        return big_endian(array("I", [table[address] for address in addresses]))
