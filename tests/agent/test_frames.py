"""SYN frames: patched a batch at a time, byte for byte what scapy would build."""

from __future__ import annotations

import random
from array import array
from ipaddress import IPv4Address

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from agent.cookie import CookieKey, big_endian
from agent.frames import (
    FRAME_BYTES,
    FRAME_OFFSET,
    SLOT_BYTES,
    AddressColumns,
    SynBatch,
    SynTemplate,
    repeat_each,
)
from agent.permutation import PassOrder

SRC_MAC = bytes.fromhex("020000000001")
TEMPLATE = SynTemplate(SRC_MAC, IPv4Address("10.0.1.4"), 40321, 777)


def _scapy_checksums(frame: bytes) -> tuple[int, int]:
    """The IP and TCP checksums scapy computes for ``frame``'s headers."""
    packet = Ether(frame)
    del packet[IP].chksum
    del packet[TCP].chksum
    rebuilt = Ether(bytes(packet))
    return rebuilt[IP].chksum, rebuilt[TCP].chksum


def test_template_is_a_syn_with_an_mss_option() -> None:
    packet = Ether(TEMPLATE.frame)

    assert len(TEMPLATE.frame) == FRAME_BYTES
    assert packet[TCP].flags == "S"
    assert packet[TCP].options == [("MSS", 1460)]
    assert packet[IP].src == "10.0.1.4"
    assert packet[TCP].sport == 40321


def test_plain_probe_has_the_checksums_scapy_computes() -> None:
    frame = TEMPLATE.probe(bytes(6), IPv4Address("10.9.8.7"), 8443, 0xDEADBEEF)
    packet = Ether(frame)

    assert (packet[IP].dst, packet[TCP].dport, packet[TCP].seq) == (
        "10.9.8.7",
        8443,
        0xDEADBEEF,
    )
    assert _scapy_checksums(frame) == (packet[IP].chksum, packet[TCP].chksum)


def test_batches_equal_plain_probes_for_every_slot() -> None:
    """Column patching gives exactly the frame a probe-by-probe build gives."""
    targets = [IPv4Address(f"10.0.2.{i}") for i in range(1, 6)]
    macs = [bytes([2, 0, 0, 0, 9, i]) for i in range(5)]
    key = CookieKey(len(targets))
    order = PassOrder(
        len(targets), random.sample(range(1, 65536), 700), random.Random(3)
    )
    buffer = bytearray(256 * SLOT_BYTES)
    batcher = SynBatch(TEMPLATE, buffer)
    words = key.port_words_be(order.ports)
    numbers = big_endian(array("I", order.ports))
    checked = 0

    for batch in order.batches(256):
        members = [order.addresses[c] for c in batch.columns]
        columns = AddressColumns.build(
            TEMPLATE,
            [macs[a] for a in members],
            [targets[a].packed for a in members],
            key.address_words_be(members),
        )
        rows = slice(4 * batch.rows.start, 4 * batch.rows.stop)
        count = batcher.fill(columns, words[rows], numbers[rows])
        for slot in range(count):
            address, port = order.probe(batch, slot)
            start = slot * SLOT_BYTES + FRAME_OFFSET
            want = TEMPLATE.probe(
                macs[address], targets[address], port, key.cookie(address, port)
            )
            assert buffer[start : start + FRAME_BYTES] == want
            checked += 1

    assert checked == 5 * 700


def test_repeat_each_repeats_words_in_place() -> None:
    words = bytes(range(12))  # three 32-bit words

    for times in (1, 2, 3, 5):
        want = b"".join(words[i : i + 4] * times for i in range(0, 12, 4))
        assert bytes(repeat_each(words, times)) == want
