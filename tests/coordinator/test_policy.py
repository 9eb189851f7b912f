"""The policy file: subnets, directed pairs by first match, scan settings, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import EXIT_USAGE, PolicyError
from coordinator.policy import Expect, Pair, load_policy, parse_policy
from protocol.messages import ScanKind

SEGMENTS = """\
version: 1
segments:
  cde:
    subnets: {cde-a: 10.0.1.0/24, cde-b: 10.0.2.0/24}
  corp:
    subnets: {corp-a: 172.16.1.0/24, corp-b: 172.16.2.0/24}
"""


def _policy(rules: str, scan: str = "", segments: str = SEGMENTS) -> str:
    text = segments + "rules:\n" + rules
    if scan:
        text += "scan:\n" + scan

    return text


def _error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")

    return info.value


def test_the_founding_policy_has_54_pairs_27_each_way(founding_policy: Path) -> None:
    policy = load_policy(founding_policy)

    into_cde = [p for p in policy.pairs if policy.subnets[p.src].segment == "corp"]
    out_of_cde = [p for p in policy.pairs if policy.subnets[p.src].segment == "cde"]
    assert len(policy.pairs) == 54
    assert len(into_cde) == 27
    assert all(p.expect is Expect.CLOSED for p in into_cde)
    assert all(policy.subnets[p.dst].segment == "cde" for p in into_cde)
    assert len(out_of_cde) == 27
    assert all(p.expect is Expect.OPEN and p.allowed_tcp is None for p in out_of_cde)
    assert len({(p.src, p.dst) for p in policy.pairs}) == 54


def test_the_founding_policy_scan_settings(founding_policy: Path) -> None:
    scan = load_policy(founding_policy).scan

    assert scan.tcp == ((1, 65535),)
    assert scan.udp == ((53, 53), (123, 123), (161, 161), (500, 500))
    assert (scan.rate_pps, scan.passes, scan.engine) == (150_000, 2, ScanKind.SYN)


def test_the_founding_policy_remembers_its_source_and_segments(
    founding_policy: Path,
) -> None:
    policy = load_policy(founding_policy)

    assert policy.source == str(founding_policy)
    assert len(policy.segments["cde"]) == 9
    assert policy.segments["corp"] == ("corp-a", "corp-b", "corp-c")
    assert str(policy.subnets["cde-c"].cidr) == "10.0.3.0/28"


def test_the_first_rule_naming_a_pair_governs_it() -> None:
    text = _policy(
        "  - {from: corp-a, to: cde-a, expect: open, tcp: [443]}\n"
        "  - {from: corp, to: cde, expect: closed}\n"
    )

    policy = parse_policy(text)

    narrow = policy.pair("corp-a", "cde-a")
    assert narrow == Pair("corp-a", "cde-a", Expect.OPEN, ((443, 443),), ())
    assert policy.pair("corp-a", "cde-b") == Pair("corp-a", "cde-b", Expect.CLOSED)
    assert len(policy.pairs) == 4


def test_a_broad_rule_first_shadows_a_later_narrow_one() -> None:
    text = _policy(
        "  - {from: corp, to: cde, expect: closed}\n"
        "  - {from: corp-a, to: cde-a, expect: open, tcp: [443]}\n"
    )

    policy = parse_policy(text)

    assert {p.expect for p in policy.pairs} == {Expect.CLOSED}


def test_rules_never_pair_a_subnet_with_itself() -> None:
    policy = parse_policy(_policy("  - {from: cde, to: cde, expect: open}\n"))

    assert [(p.src, p.dst) for p in policy.pairs] == [
        ("cde-a", "cde-b"),
        ("cde-b", "cde-a"),
    ]


def test_pair_is_none_for_a_pair_no_rule_covers() -> None:
    policy = parse_policy(_policy("  - {from: corp, to: cde, expect: closed}\n"))

    assert policy.pair("cde-a", "corp-a") is None


def test_ports_on_an_open_rule_restrict_both_protocols() -> None:
    policy = parse_policy(_policy("  - {from: cde, to: corp, expect: open, udp: 53}\n"))

    pair = policy.pair("cde-a", "corp-a")
    assert pair is not None
    assert (pair.allowed_tcp, pair.allowed_udp) == ((), ((53, 53),))


def test_ports_on_a_closed_rule_are_an_error_at_the_rule() -> None:
    text = _policy(
        "  - {from: cde, to: corp, expect: open}\n"
        "  - {from: corp, to: cde, expect: closed, tcp: [22]}\n"
    )

    error = _error(text)

    assert error.subject == "p.yaml:9"
    assert "ports only narrow an `expect: open` rule" in error.message
    assert error.exit_code == EXIT_USAGE


def test_an_unknown_segment_names_its_line_and_the_known_names() -> None:
    text = _policy(
        "  - {from: corp, to: cde, expect: closed}\n"
        "  - {from: crop, to: cde, expect: closed}\n"
    )

    error = _error(text)

    assert error.subject == "p.yaml:9"
    assert "unknown segment or subnet 'crop'" in error.message
    assert "known: cde, cde-a, cde-b, corp, corp-a, corp-b" in error.message


def test_overlapping_subnets_are_refused_naming_both() -> None:
    segments = (
        "version: 1\nsegments:\n  cde:\n    subnets:\n      cde-a: 10.0.0.0/16\n"
        "  corp:\n    subnets:\n      corp-a: 10.0.7.0/24\n"
    )

    error = _error(_policy("  - {from: corp, to: cde, expect: closed}\n", "", segments))

    assert error.subject == "p.yaml:8"
    assert error.message == "corp-a (10.0.7.0/24) overlaps cde-a"


@pytest.mark.parametrize("name", ["cde-a", "corp"])
def test_a_name_used_twice_is_refused(name: str) -> None:
    """A subnet name may appear once, and not as a segment name either."""
    segments = SEGMENTS + f"  other:\n    subnets:\n      {name}: 192.168.0.0/24\n"

    error = _error(_policy("  - {from: corp, to: cde, expect: closed}\n", "", segments))

    assert error.subject == "p.yaml:9"
    assert f"subnet name {name!r} is used twice" in error.message


def test_a_subnet_listed_twice_in_one_segment_is_refused() -> None:
    segments = (
        "version: 1\nsegments:\n  cde:\n    subnets:\n"
        "      cde-a: 10.0.1.0/24\n      cde-a: 10.0.2.0/24\n"
        "  corp:\n    subnets: {corp-a: 172.16.1.0/24}\n"
    )

    error = _error(_policy("  - {from: corp, to: cde, expect: closed}\n", "", segments))

    assert error.subject == "p.yaml:6"


@pytest.mark.parametrize(
    ("cidr", "says"),
    [
        ("10.0.1.1/24", "has host bits set"),
        ("10.0.1.0/33", "bad CIDR for subnet 'cde-a'"),
        ("cde", "bad CIDR for subnet 'cde-a'"),
        ("fd00::/64", "bad CIDR for subnet 'cde-a'"),
    ],
)
def test_a_bad_cidr_is_refused_at_its_line(cidr: str, says: str) -> None:
    segments = (
        f"version: 1\nsegments:\n  cde:\n    subnets:\n      cde-a: {cidr}\n"
        "  corp:\n    subnets: {corp-a: 172.16.1.0/24}\n"
    )

    error = _error(_policy("  - {from: corp, to: cde, expect: closed}\n", "", segments))

    assert error.subject == "p.yaml:5"
    assert says in error.message


@pytest.mark.parametrize("version", ["2", "0"])
def test_a_policy_version_other_than_1_is_refused(version: str) -> None:
    text = _policy("  - {from: corp, to: cde, expect: closed}\n").replace(
        "version: 1", f"version: {version}"
    )

    error = _error(text)

    assert error.message == f"unsupported policy version {version} (expected 1)"


def test_a_bad_version_error_points_at_the_version_line() -> None:
    text = SEGMENTS.replace("version: 1\n", "") + (
        "rules:\n  - {from: corp, to: cde, expect: closed}\nversion: 2\n"
    )

    error = _error(text)

    assert error.subject == "p.yaml:8"


@pytest.mark.parametrize(
    ("scan", "line", "says"),
    [
        ("  rate: 0\n", 10, "rate must be at least 1 probe per second"),
        ("  passes: 0\n", 10, "passes must be between 1 and 10"),
        ("  passes: 11\n", 10, "passes must be between 1 and 10"),
        ("  chunk_probes: 999\n", 10, "chunk_probes must be at least 1000"),
        ("  tcp: null\n", 10, "scan names no ports"),
        ("  tcp: 1-1024\n  udp: [53, 70000]\n", 11, "ports run 1-65535"),
        ("  tcp: []\n", 10, "empty port set"),
        ("  rate: fast\n", 10, "Expected `int`, got `str`"),
        ("  engine: nmap\n", 10, "Invalid enum value 'nmap'"),
        ("  ports: 22\n", 10, "unknown field `ports`"),
    ],
)
def test_bad_scan_settings_are_refused_at_their_line(
    scan: str, line: int, says: str
) -> None:
    error = _error(_policy("  - {from: corp, to: cde, expect: closed}\n", scan))

    assert error.subject == f"p.yaml:{line}"
    assert says in error.message


def test_scan_settings_default_to_every_tcp_port() -> None:
    scan = parse_policy(_policy("  - {from: corp, to: cde, expect: closed}\n")).scan

    assert (scan.tcp, scan.udp) == (((1, 65535),), ())
    assert (scan.rate_pps, scan.passes, scan.chunk_probes) == (20_000, 2, 2_000_000)


@pytest.mark.parametrize(
    ("rules", "says"),
    [
        ("  - {from: corp, to: cde, expect: maybe}\n", "Invalid enum value 'maybe'"),
        ("  - {from: corp, expect: closed}\n", "missing required field `to`"),
        ("  - {from: corp, to: cde, expect: open, tcp: 0}\n", "ports run 1-65535"),
        ("  - {from: corp-a, to: corp-a, expect: closed}\n", "name no subnet pair"),
    ],
)
def test_bad_rules_are_refused_at_their_line(rules: str, says: str) -> None:
    error = _error(_policy(rules))

    assert error.subject in ("p.yaml:7", "p.yaml:8")
    assert says in error.message


def test_a_policy_without_segments_is_refused() -> None:
    error = _error("version: 1\nsegments: {}\nrules: []\n")

    assert error.subject == "p.yaml:2"
    assert error.message == "no segments defined"


def test_a_yaml_syntax_error_is_a_policy_error_with_its_line() -> None:
    error = _error(_policy("  - {from: corp, to: cde, expect: closed}}\n"))

    assert error.subject == "p.yaml:8"
    assert error.message.startswith("invalid YAML")


def test_sha256_is_the_hash_of_the_exact_text_and_stable() -> None:
    text = _policy("  - {from: corp, to: cde, expect: closed}\n")

    first, again = parse_policy(text), parse_policy(text)
    edited = parse_policy(text + "# reviewed\n")

    assert first.sha256 == again.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert edited.sha256 != first.sha256


def test_load_policy_of_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(PolicyError) as info:
        load_policy(path)

    assert info.value.subject == str(path)
    assert "cannot read: No such file or directory" in info.value.message


def test_load_policy_of_a_file_that_is_not_utf8_is_a_policy_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")

    with pytest.raises(PolicyError):
        load_policy(path)


# --- properties (issue 5: hostile input) -----------------------------------


def _segments_text(cidrs: list[str]) -> str:
    names = [f"s{i}" for i in range(len(cidrs))]
    half = max(1, len(names) // 2)
    inside = ", ".join(f"{n}: {c}" for n, c in zip(names[:half], cidrs, strict=False))
    outside = ", ".join(
        f"{n}: {c}" for n, c in zip(names[half:], cidrs[half:], strict=False)
    )
    text = f"version: 1\nsegments:\n  a:\n    subnets: {{{inside}}}\n"
    if outside:
        text += f"  b:\n    subnets: {{{outside}}}\n"

    return text


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.lists(st.integers(0, 255), min_size=2, max_size=6, unique=True),
    st.sampled_from(["closed", "open"]),
)
def test_generated_policies_pair_every_subnet_of_one_segment_with_the_other(
    octets: list[int], expect: str
) -> None:
    cidrs = [f"10.{o}.0.0/24" for o in octets]
    text = _segments_text(cidrs) + f"rules:\n  - {{from: a, to: b, expect: {expect}}}\n"
    half = max(1, len(cidrs) // 2)

    policy = parse_policy(text, "gen.yaml")

    assert len(policy.pairs) == half * (len(cidrs) - half)
    assert {p.expect for p in policy.pairs} == {Expect(expect)}


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=400))
def test_arbitrary_text_raises_only_a_policy_error_naming_the_file(text: str) -> None:
    try:
        parse_policy(text, "fuzz.yaml")
    except PolicyError as exc:
        error = exc
    else:
        return
    assert error.subject.startswith("fuzz.yaml")
