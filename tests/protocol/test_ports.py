"""Port sets: parsing what users write, and the range arithmetic on the result."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ports import (
    MAX_PORT,
    PortRanges,
    compress,
    count,
    expand,
    format_ports,
    intersect,
    merge,
    parse_ports,
    subtract,
)

PROPERTY = settings(max_examples=100, deadline=None, database=None)

# Small ports keep the set comparisons cheap and make overlaps likely.
small_ports = st.sets(st.integers(min_value=1, max_value=200), max_size=60)
any_ports = st.sets(st.integers(min_value=1, max_value=MAX_PORT), max_size=40)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1-65535", ((1, 65535),)),
        ([22, 443, "8000-8100"], ((22, 22), (443, 443), (8000, 8100))),
        ("22,443,8000-8100", ((22, 22), (443, 443), (8000, 8100))),
        ("22, 443 ,8000-8100", ((22, 22), (443, 443), (8000, 8100))),
        (443, ((443, 443),)),
        ((80, 22), ((22, 22), (80, 80))),
        ("65535", ((65535, 65535),)),
    ],
)
def test_parse_ports_accepts_the_written_forms(
    value: object, expected: PortRanges
) -> None:
    """A range, a list with ranges, a string and a single int all parse."""
    parsed = parse_ports(value)

    assert parsed == expected


def test_parse_ports_sorts_and_merges_overlapping_and_touching_ranges() -> None:
    parsed = parse_ports(["8080-8090", 22, "8085-8100", 23, "20-21", 8101])

    assert parsed == ((20, 23), (8080, 8101))


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (0, "ports run 1-65535"),
        (65536, "ports run 1-65535"),
        ("0-10", "ports run 1-65535"),
        ("100-65536", "ports run 1-65535"),
        ("443-22", "low first"),
        ("http", "expected N or N-M"),
        ("22-", "expected N or N-M"),
        ("1-2-3", "expected N or N-M"),
        ([22, "ssh"], "expected N or N-M"),
        ([22.5], "expected N or N-M"),
        ([[22, 23]], "expected N or N-M"),
        (True, "expected ports"),
        ([True], "bad port True"),
        (None, "expected ports like 1-65535"),
        ({"tcp": 22}, "expected ports like 1-65535"),
        ("", "empty port set"),
        (" , ", "empty port set"),
        ([], "empty port set"),
    ],
)
def test_parse_ports_rejects_bad_input_saying_what_is_wrong(
    value: object, says: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_ports(value)


def test_merge_joins_ranges_that_touch_but_keeps_gaps() -> None:
    merged = merge([(10, 20), (21, 30), (32, 40), (1, 5), (3, 4)])

    assert merged == ((1, 5), (10, 30), (32, 40))


def test_compress_turns_single_ports_into_fewest_ranges() -> None:
    ranges = compress([5, 3, 4, 9, 1, 10, 4])

    assert ranges == ((1, 1), (3, 5), (9, 10))


def test_count_and_expand_agree_on_the_ports_held() -> None:
    ranges = ((1, 3), (10, 10), (65534, 65535))

    assert count(ranges) == 6
    assert list(expand(ranges)) == [1, 2, 3, 10, 65534, 65535]


def test_count_of_the_full_range_is_every_port() -> None:
    assert count(parse_ports("1-65535")) == MAX_PORT


def test_intersect_keeps_only_shared_ports() -> None:
    shared = intersect(((1, 10), (20, 30)), ((5, 25), (30, 40)))

    assert shared == ((5, 10), (20, 25), (30, 30))


def test_subtract_cuts_holes_out_of_ranges() -> None:
    left = subtract(((1, 100),), ((1, 1), (10, 19), (50, 60), (100, 200)))

    assert left == ((2, 9), (20, 49), (61, 99))


def test_subtract_of_nothing_and_from_nothing() -> None:
    assert subtract(((22, 22),), ()) == ((22, 22),)
    assert subtract((), ((22, 22),)) == ()


def test_format_ports_writes_ranges_the_way_users_do() -> None:
    text = format_ports(((22, 22), (443, 443), (8000, 8100)))

    assert text == "22,443,8000-8100"


def test_format_of_nothing_is_empty() -> None:
    assert format_ports(()) == ""


@PROPERTY
@given(any_ports.filter(bool))
def test_format_then_parse_round_trips(ports: set[int]) -> None:
    ranges = compress(ports)

    assert parse_ports(format_ports(ranges)) == ranges


@PROPERTY
@given(small_ports)
def test_compress_of_expand_is_identity_on_merged_ranges(ports: set[int]) -> None:
    ranges = compress(ports)

    assert compress(expand(ranges)) == ranges
    assert set(expand(ranges)) == ports
    assert count(ranges) == len(ports)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.integers(1, 300), st.integers(0, 40)).map(
            lambda t: (t[0], t[0] + t[1])
        ),
        max_size=12,
    )
)
def test_merge_holds_the_same_ports_in_sorted_disjoint_ranges(
    raw: list[tuple[int, int]],
) -> None:
    merged = merge(raw)

    assert set(expand(merged)) == {
        p for first, last in raw for p in range(first, last + 1)
    }
    assert all(a[1] + 1 < b[0] for a, b in pairwise(merged))


@PROPERTY
@given(small_ports, small_ports)
def test_intersect_agrees_with_set_intersection(a: set[int], b: set[int]) -> None:
    shared = intersect(compress(a), compress(b))

    assert shared == compress(a & b)


@PROPERTY
@given(small_ports, small_ports)
def test_subtract_agrees_with_set_difference(a: set[int], b: set[int]) -> None:
    left = subtract(compress(a), compress(b))

    assert left == compress(a - b)
