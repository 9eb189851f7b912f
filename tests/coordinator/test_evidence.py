"""The evidence bundle: signed manifest of digests; any altered, missing or extra
file makes verification fail and names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import cli, evidence, logs
from coordinator.runs import RunManager
from coordinator.vault import Vault
from protocol.messages import Assignment
from protocol.signing import generate_key, public_path
from tests.conftest import ResultFor
from tests.coordinator.sample import founding_report


@pytest.fixture(autouse=True)
def _quiet_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure() would bind structlog to capsys's stream for the rest of the session.
    monkeypatch.setattr(logs, "configure", lambda: None)


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "coordinator.pem"
    generate_key(path)
    monkeypatch.setenv("SEGSCAN_SIGNING_KEY", str(path))

    return path


@pytest.fixture
async def bundle(
    run_manager: RunManager,
    dispatched: list[Assignment],
    result_for: ResultFor,
    founding_policy: Path,
    tmp_path: Path,
    key: Path,
) -> Path:
    """The founding run's bundle, written as the run settled."""
    run_manager.vault = Vault(tmp_path / "evidence")
    report = await founding_report(run_manager, dispatched, result_for, founding_policy)

    return run_manager.vault.bundle(report["run"])


def test_a_fresh_bundle_verifies_with_the_coordinators_key(
    bundle: Path, key: Path
) -> None:
    outcome = evidence.verify_bundle(bundle, public_path(key))

    assert outcome.problems == ()
    assert not outcome.key_from_bundle
    assert outcome.files > 54 * 2  # results and assignments of every chunk


def test_the_bundle_holds_results_policy_scope_and_every_report(bundle: Path) -> None:
    names = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")}

    assert {
        "manifest.json",
        "manifest.sig",
        "coordinator.pub",
        "policy.yaml",
        "scope.json",
        "results/index.json",
        "report/report.json",
        "report/report.html",
        "report/report.txt",
        "report/findings.csv",
        "report/graph.dot",
        "report/nmap/corp-b.xml",
    } <= names
    assert sum(n.startswith("results/") and n.endswith(".msgpack") for n in names) == 54


def test_altering_one_byte_of_any_file_fails_and_names_it(
    bundle: Path, key: Path
) -> None:
    """Every file in turn, manifest and signature included."""
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        name = path.relative_to(bundle).as_posix()
        original = path.read_bytes()
        path.write_bytes(bytes([original[0] ^ 0x01]) + original[1:])
        try:
            with_key = evidence.verify_bundle(bundle, public_path(key))
            carried = evidence.verify_bundle(bundle)
        finally:
            path.write_bytes(original)

        for outcome in (with_key, carried):
            assert not outcome.ok, name
            assert any(name in problem for problem in outcome.problems), (
                name,
                outcome.problems,
            )


def test_a_missing_and_an_extra_file_are_named(bundle: Path) -> None:
    (bundle / "policy.yaml").unlink()
    (bundle / "report" / "smuggled.txt").write_text("hi")

    outcome = evidence.verify_bundle(bundle)

    assert "missing: policy.yaml" in outcome.problems
    assert "unexpected: report/smuggled.txt" in outcome.problems


def test_a_bundle_signed_by_another_key_fails_with_the_right_key(
    bundle: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    generate_key(other)

    outcome = evidence.verify_bundle(bundle, public_path(other))

    assert not outcome.ok
    assert any("signature does not verify" in p for p in outcome.problems)


def test_the_cli_names_the_altered_file_and_exits_1(
    bundle: Path, key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = bundle / "report" / "findings.csv"
    csv.write_bytes(csv.read_bytes().replace(b"5432", b"5433", 1))

    code = cli.main(["evidence", "verify", str(bundle), "--key", str(public_path(key))])

    out = capsys.readouterr().out
    assert code == 1
    assert "altered: report/findings.csv" in out


def test_the_cli_warns_that_a_carried_key_proves_no_origin(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["evidence", "verify", str(bundle)])

    captured = capsys.readouterr()
    assert code == 0
    assert "ok" in captured.out
    assert "integrity, not origin" in captured.err


def test_paths_that_leave_the_bundle_are_refused() -> None:
    for bad in ("../x", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="unsafe"):
            evidence.safe(bad)
