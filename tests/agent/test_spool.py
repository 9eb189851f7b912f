"""The spool: results kept on disk until acknowledged, and what was acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.spool import ACK_KEEP_S, Spool
from protocol.messages import Coverage, Result


def _result(assignment_id: str = "a1", agent: str = "corp-a@h") -> Result:
    return Result(
        assignment_id=assignment_id,
        run_id="run-1",
        src="corp-a",
        dst="cde-a",
        agent=agent,
        engine="connect",
        started_at=1.0,
        finished_at=2.0,
        coverage=Coverage(14, 14, 0, 1),
        findings=(),
    )


def test_a_result_put_is_pending_and_reads_back_whole(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    spool.put(_result("a1"))
    spool.put(_result("a2"))

    assert sorted(spool.pending()) == ["a1", "a2"]
    assert spool.load("a1") == _result("a1")
    assert spool.load("absent") is None


def test_a_second_spool_on_the_same_disk_finds_what_the_first_left(
    tmp_path: Path,
) -> None:
    """An agent restarted from its image picks its spool up again."""
    Spool(tmp_path).put(_result("a1"))

    again = Spool(tmp_path)

    assert again.pending() == ["a1"]
    assert again.load("a1") == _result("a1")


def test_an_acknowledged_result_is_forgotten_but_its_id_remembered(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    spool.put(_result("a1"))

    spool.ack("a1", expires_at=1000.0)

    assert spool.pending() == []
    assert spool.load("a1") is None
    assert spool.acked("a1")
    assert not spool.acked("a2")


def test_acknowledgements_are_pruned_after_their_assignment_expired(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    spool.ack("old", expires_at=100.0)
    spool.ack("new", expires_at=10_000.0)

    pruned = spool.prune(now=100.0 + ACK_KEEP_S + 1)

    assert pruned == 1
    assert (spool.acked("old"), spool.acked("new")) == (False, True)


def test_a_refused_result_is_set_aside_not_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(_result("a1"))

    spool.refuse("a1")

    assert spool.pending() == []
    assert (tmp_path / "refused" / "a1.msgpack").exists()


def test_an_unreadable_result_is_set_aside_instead_of_blocking(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "bad.msgpack").write_bytes(b"\xc1not msgpack")

    assert spool.load("bad") is None
    assert spool.pending() == []
    assert (tmp_path / "refused" / "bad.msgpack").exists()


def test_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    Spool(tmp_path).put(_result("a1"))

    assert [p.name for p in (tmp_path / "pending").iterdir()] == ["a1.msgpack"]


@pytest.mark.parametrize("bad", ["../etc/passwd", "", "a/b", "x" * 65])
def test_an_id_that_is_not_one_never_becomes_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not an assignment id"):
        Spool(tmp_path).put(_result(bad))
