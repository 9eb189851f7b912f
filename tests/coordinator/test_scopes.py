"""``coordinator scope sign``: the owner signs a checked scope; agents verify it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.scope import verify_file
from coordinator import cli, logs
from protocol.scope import signature_path
from protocol.signing import generate_key, key_id, public_path

SCOPE = """\
version: 1
subnets: [corp-a]
max_rate_pps: 20000
destinations:
  - {cidr: 10.0.0.0/16, tcp: 1-65535}
"""


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "configure", lambda: None)


def test_a_signed_scope_verifies_as_the_agent_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = generate_key(tmp_path / "owner.pem")
    scope = tmp_path / "corp.yaml"
    scope.write_text(SCOPE)

    code = cli.main(["scope", "sign", str(scope), "--key", str(tmp_path / "owner.pem")])

    assert code == 0
    assert key_id(owner.public_key()) in capsys.readouterr().out
    assert verify_file(scope, public_path(tmp_path / "owner.pem")).subnets == (
        "corp-a",
    )


def test_a_malformed_scope_is_one_line_with_file_and_line_and_unsigned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_key(tmp_path / "owner.pem")
    scope = tmp_path / "corp.yaml"
    scope.write_text(SCOPE.replace("10.0.0.0/16", "10.0.0.0/99"))

    code = cli.main(["scope", "sign", str(scope), "--key", str(tmp_path / "owner.pem")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"coordinator: {scope}:5: bad CIDR '10.0.0.0/99'")
    assert err.count("\n") == 1
    assert not signature_path(scope).exists()


def test_a_missing_key_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = tmp_path / "corp.yaml"
    scope.write_text(SCOPE)

    code = cli.main(["scope", "sign", str(scope), "--key", str(tmp_path / "none.pem")])

    assert code == 2
    assert "cannot load private key" in capsys.readouterr().err
