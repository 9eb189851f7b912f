"""Transitive paths: chains of reachable pairs into a pair the policy keeps closed."""

from __future__ import annotations

from coordinator import transitive


def test_a_two_hop_path_into_a_closed_pair_is_found() -> None:
    """corp-a reaches corp-b, corp-b reaches cde-c: corp-a reaches cde-c."""
    edges = [("corp-a", "corp-b"), ("corp-b", "cde-c")]
    closed = {("corp-a", "cde-c"): "pass", ("corp-b", "cde-c"): "fail"}

    paths, cut = transitive.find(edges, closed)

    assert [(p.path, p.direct_verdict) for p in paths] == [
        (("corp-a", "corp-b", "cde-c"), "pass")
    ]
    assert not cut


def test_a_direct_edge_alone_is_no_transitive_path() -> None:
    paths, _ = transitive.find([("corp-b", "cde-c")], {("corp-b", "cde-c"): "fail"})

    assert paths == []


def test_paths_to_pairs_the_policy_does_not_close_are_left_out() -> None:
    """cde-a -> corp-b -> cde-c ends in a pair no rule closes: not listed."""
    edges = [("cde-a", "corp-b"), ("corp-b", "cde-c")]

    paths, _ = transitive.find(edges, {("corp-b", "cde-c"): "fail"})

    assert paths == []


def test_longer_paths_come_after_shorter_ones_and_cycles_are_not_walked() -> None:
    edges = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("a", "c")]
    closed = {("a", "d"): "pass"}

    paths, _ = transitive.find(edges, closed)

    assert [p.path for p in paths] == [("a", "c", "d"), ("a", "b", "c", "d")]


def test_a_dense_graph_is_cut_at_max_paths() -> None:
    """Everything reaching everything: the list stops at MAX_PATHS and says so."""
    nodes = [f"n{i}" for i in range(12)]
    edges = [(a, b) for a in nodes for b in nodes if a != b]
    closed = {(a, b): "fail" for a, b in edges}

    paths, cut = transitive.find(edges, closed)

    assert cut
    assert len(paths) == transitive.MAX_PATHS
    assert all(len(p.path) == 3 for p in paths)
