"""The TCP SYN probe: a frame built once with scapy, then patched in place a
whole batch at a time.

Design note (the hot loop): per probe only four things change: destination
address (with the IP checksum), destination port, sequence cookie and TCP
checksum.  A Python statement per field and probe costs more than the kernel
needs to send the frame, so a batch is patched column by column instead: the
cookies of every slot come from one XOR of two big integers holding 32-bit
lanes, the checksums from a few lane-wise additions and folds of the
precomputed partial sums (RFC 1071 allows summing in any order), and each
column lands in the frames with one strided memoryview assignment.  Slot
``i`` holds the frame at offset 2 so that the 32-bit fields are aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from agent.checksum import finish, word_sum

SLOT_BYTES = 64
FRAME_OFFSET = 2
FRAME_BYTES = 58  # Ethernet 14 + IPv4 20 + TCP 20 + MSS option 4
MSS = 1460  # some middleboxes drop a SYN without an MSS option
WINDOW = 64240
TTL = 64

_ETH = 14
_TCP = _ETH + 20

# Field positions in 16-bit (H) and 32-bit (I) units of a slot.
_H_PER_SLOT = SLOT_BYTES // 2
_I_PER_SLOT = SLOT_BYTES // 4
_H_ETH_DST = (FRAME_OFFSET + 0) // 2
_H_IP_CSUM = (FRAME_OFFSET + _ETH + 10) // 2
_I_IP_DST = (FRAME_OFFSET + _ETH + 16) // 4
_H_DPORT = (FRAME_OFFSET + _TCP + 2) // 2
_I_SEQ = (FRAME_OFFSET + _TCP + 4) // 4
_H_TCP_CSUM = (FRAME_OFFSET + _TCP + 16) // 2


class SynTemplate:
    """The frame every probe of one scan starts from, with its partial sums."""

    def __init__(
        self, src_mac: bytes, src_ip: IPv4Address, sport: int, ip_id: int
    ) -> None:
        from scapy.layers.inet import IP, TCP
        from scapy.layers.l2 import Ether

        packet = (
            Ether(src=src_mac.hex(":"), dst="00:00:00:00:00:00")
            / IP(src=str(src_ip), dst="0.0.0.0", id=ip_id, flags="DF", ttl=TTL)
            / TCP(sport=sport, dport=0, seq=0, flags="S", window=WINDOW)
        )
        packet[TCP].options = [("MSS", MSS)]
        self.source, self.sport = src_ip, sport
        frame = bytearray(bytes(packet))
        if len(frame) != FRAME_BYTES:
            raise AssertionError(f"SYN template is {len(frame)} bytes")
        frame[_ETH + 10 : _ETH + 12] = bytes(2)  # both checksums are ours
        frame[_TCP + 16 : _TCP + 18] = bytes(2)
        self.frame = bytes(frame)
        self.ip_sum = word_sum(self.frame[_ETH:_TCP])
        pseudo = src_ip.packed + bytes(4) + bytes([0, 6, 0, FRAME_BYTES - _TCP])
        self.tcp_sum = word_sum(pseudo) + word_sum(self.frame[_TCP:])

    def address_sums(self, dst: bytes) -> tuple[int, int]:
        """The IP checksum for ``dst`` and the TCP partial sum it contributes."""
        words = (dst[0] << 8 | dst[1]) + (dst[2] << 8 | dst[3])

        return finish(self.ip_sum + words), self.tcp_sum + words

    def probe(self, dst_mac: bytes, dst: IPv4Address, port: int, cookie: int) -> bytes:
        """One whole frame, computed the plain way (for priming and tests)."""
        frame = bytearray(self.frame)
        ip_csum, partial = self.address_sums(dst.packed)
        tcp_csum = finish(partial + port + (cookie >> 16) + (cookie & 0xFFFF))
        frame[0:6] = dst_mac
        frame[_ETH + 10 : _ETH + 12] = ip_csum.to_bytes(2, "big")
        frame[_ETH + 16 : _ETH + 20] = dst.packed
        frame[_TCP + 2 : _TCP + 8] = port.to_bytes(2, "big") + cookie.to_bytes(4, "big")
        frame[_TCP + 16 : _TCP + 18] = tcp_csum.to_bytes(2, "big")

        return bytes(frame)


@dataclass(frozen=True)
class AddressColumns:
    """Per-address columns of one block of addresses, in slot order."""

    count: int
    macs: tuple[bytes, bytes, bytes]  # the three 16-bit words of each MAC
    dsts: bytes
    ip_csums: bytes
    words: bytes  # cookie address words, 32-bit network order
    sums: bytes  # TCP partial sums, 32-bit network order

    @classmethod
    def build(
        cls,
        template: SynTemplate,
        macs: Sequence[bytes],
        dsts: Sequence[bytes],
        words: bytes,
    ) -> AddressColumns:
        sums = [template.address_sums(dst) for dst in dsts]

        return cls(
            count=len(dsts),
            macs=(
                b"".join(mac[0:2] for mac in macs),
                b"".join(mac[2:4] for mac in macs),
                b"".join(mac[4:6] for mac in macs),
            ),
            dsts=b"".join(dsts),
            ip_csums=b"".join(csum.to_bytes(2, "big") for csum, _ in sums),
            words=words,
            sums=b"".join(partial.to_bytes(4, "big") for _, partial in sums),
        )


def repeat_each(words: bytes, times: int) -> bytes | bytearray:
    """Every 32-bit word of ``words`` repeated ``times`` times in a row."""
    if times == 1:
        return words
    count = len(words) // 4
    if times > count:
        return b"".join(words[i : i + 4] * times for i in range(0, len(words), 4))
    out = bytearray(len(words) * times)
    view, source = memoryview(out).cast("I"), memoryview(words).cast("I")
    for offset in range(times):
        view[offset::times] = source

    return out


class SynBatch:
    """Slots of a sender's buffer, patched a batch of probes at a time."""

    def __init__(self, template: SynTemplate, buffer: bytearray) -> None:
        for start in range(FRAME_OFFSET, len(buffer), SLOT_BYTES):
            buffer[start : start + FRAME_BYTES] = template.frame
        self._h = memoryview(buffer).cast("H")
        self._i = memoryview(buffer).cast("I")
        self._layout: tuple[AddressColumns, int] | None = None
        self._words = self._sums = self._mask = 0

    def fill(self, columns: AddressColumns, port_words: bytes, ports: bytes) -> int:
        """Patch slots for every port (row) times every address (column).

        ``port_words`` are the rows' cookie words and ``ports`` the rows' port
        numbers, both as 32-bit network-order words.  Returns the slot count.
        """
        rows = len(ports) // 4
        count = rows * columns.count
        if self._layout != (columns, rows):
            self._lay_out(columns, rows)
        words = repeat_each(port_words, columns.count)
        numbers = repeat_each(ports, columns.count)
        mask = self._mask

        seq = self._words ^ int.from_bytes(words)
        total = self._sums + int.from_bytes(numbers) + ((seq >> 16) & mask)
        total += seq & mask
        total = (total & mask) + ((total >> 16) & mask)
        total = ((total & mask) + ((total >> 16) & mask)) ^ mask

        self._put_i(_I_SEQ, count, seq.to_bytes(4 * count))
        self._h[_H_DPORT : _H_DPORT + _H_PER_SLOT * count : _H_PER_SLOT] = memoryview(
            numbers
        ).cast("H")[1::2]
        self._h[_H_TCP_CSUM : _H_TCP_CSUM + _H_PER_SLOT * count : _H_PER_SLOT] = (
            memoryview(total.to_bytes(4 * count)).cast("H")[1::2]
        )

        return count

    def _lay_out(self, columns: AddressColumns, rows: int) -> None:
        """Write the address columns for ``rows`` rows; keep their lanes."""
        count = rows * columns.count
        for word, mac in enumerate(columns.macs):
            self._put_h(_H_ETH_DST + word, count, mac * rows)
        self._put_h(_H_IP_CSUM, count, columns.ip_csums * rows)
        self._put_i(_I_IP_DST, count, columns.dsts * rows)
        self._words = int.from_bytes(columns.words * rows)
        self._sums = int.from_bytes(columns.sums * rows)
        self._mask = int.from_bytes(b"\x00\x00\xff\xff" * count)
        self._layout = (columns, rows)

    def _put_h(self, first: int, count: int, data: bytes) -> None:
        end = first + _H_PER_SLOT * count
        self._h[first:end:_H_PER_SLOT] = memoryview(data).cast("H")

    def _put_i(self, first: int, count: int, data: bytes) -> None:
        end = first + _I_PER_SLOT * count
        self._i[first:end:_I_PER_SLOT] = memoryview(data).cast("I")
