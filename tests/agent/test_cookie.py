"""Sequence cookies: per scan, per probe, and checked on the way back."""

from __future__ import annotations

from agent.cookie import CookieKey


def test_a_reply_must_acknowledge_the_cookie_plus_one() -> None:
    key = CookieKey(4)
    cookie = key.cookie(2, 443)

    assert key.acknowledges(2, 443, (cookie + 1) & 0xFFFFFFFF)
    assert not key.acknowledges(2, 443, cookie)
    assert not key.acknowledges(3, 443, (cookie + 1) & 0xFFFFFFFF)
    assert not key.acknowledges(2, 444, (cookie + 1) & 0xFFFFFFFF)


def test_keys_differ_between_scans() -> None:
    first, second = CookieKey(16), CookieKey(16)

    same = sum(
        first.cookie(a, p) == second.cookie(a, p)
        for a in range(16)
        for p in range(1, 1000)
    )
    assert same < 3


def test_words_come_out_in_network_order_in_the_order_asked() -> None:
    key = CookieKey(3)

    ports = key.port_words_be([80, 22])
    addresses = key.address_words_be([2, 0])

    assert ports == key.port_words[80].to_bytes(4, "big") + key.port_words[22].to_bytes(
        4, "big"
    )
    assert addresses[:4] == key.address_words[2].to_bytes(4, "big")
