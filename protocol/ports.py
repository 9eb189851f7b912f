"""Port sets as sorted, merged ranges: the one form ports take on the wire.

Users write a port set as ``1-65535``, as a list (``[22, 443, 8000-8100]``) or
as a string (``"22,443,8000-8100"``); everything inside segscan holds the
normalised tuple of inclusive ``(first, last)`` ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

PortRange = tuple[int, int]
PortRanges = tuple[PortRange, ...]

MAX_PORT = 65535


def parse_ports(value: object) -> PortRanges:
    """Parse a user-written port set; raise ``ValueError`` saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"expected ports, got {value!r}")
    if isinstance(value, int):
        items: list[object] = [value]
    elif isinstance(value, str):
        items = [part for part in value.replace(" ", "").split(",") if part]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"expected ports like 1-65535 or [22, 443], got {value!r}")
    if not items:
        raise ValueError("empty port set")

    return merge(_parse_item(item) for item in items)


def _parse_item(item: object) -> PortRange:
    if isinstance(item, bool):
        raise ValueError(f"bad port {item!r}")
    if isinstance(item, int):
        first = last = item
    elif isinstance(item, str):
        first_s, sep, last_s = item.strip().partition("-")
        try:
            first = int(first_s)
            last = int(last_s) if sep else first
        except ValueError:
            raise ValueError(f"bad port {item!r}: expected N or N-M") from None
    else:
        raise ValueError(f"bad port {item!r}: expected N or N-M")
    if not 1 <= first <= last <= MAX_PORT:
        raise ValueError(f"bad port range {item!r}: ports run 1-{MAX_PORT}, low first")

    return first, last


def merge(ranges: Iterable[PortRange]) -> PortRanges:
    """Sort ranges and join the ones that overlap or touch."""
    merged: list[PortRange] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))

    return tuple(merged)


def compress(ports: Iterable[int]) -> PortRanges:
    """Turn single ports into the fewest ranges."""
    return merge((port, port) for port in ports)


def count(ranges: PortRanges) -> int:
    """How many ports a range set holds."""
    return sum(last - first + 1 for first, last in ranges)


def expand(ranges: PortRanges) -> Iterator[int]:
    """Every port of a range set, in order."""
    for first, last in ranges:
        yield from range(first, last + 1)


def intersect(a: PortRanges, b: PortRanges) -> PortRanges:
    """The ports present in both range sets."""
    out: list[PortRange] = []
    i = j = 0
    while i < len(a) and j < len(b):
        first = max(a[i][0], b[j][0])
        last = min(a[i][1], b[j][1])
        if first <= last:
            out.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1

    return tuple(out)


def subtract(a: PortRanges, b: PortRanges) -> PortRanges:
    """The ports of ``a`` that are not in ``b``."""
    out: list[PortRange] = []
    for first, last in a:
        cursor = first
        for b_first, b_last in b:
            if b_last < cursor or b_first > last:
                continue
            if b_first > cursor:
                out.append((cursor, b_first - 1))
            cursor = max(cursor, b_last + 1)
        if cursor <= last:
            out.append((cursor, last))

    return tuple(out)


def format_ports(ranges: PortRanges) -> str:
    """Render ranges the way users write them: ``22,443,8000-8100``."""
    return ",".join(str(f) if f == last else f"{f}-{last}" for f, last in ranges)
