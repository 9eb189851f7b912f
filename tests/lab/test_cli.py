"""``segscan-lab``: one line and exit 2 for every user error; up, status, down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from deploy.lab import lab
from deploy.lab.cli import main
from tests.lab.helpers import require_no_lab, write_spec

SPEC = """\
version: 1
subnets:
  a: {cidr: 10.40.1.0/28, vpc: x}
  b: {cidr: 10.40.2.0/28, vpc: y}
hosts:
  - {ip: 10.40.2.5, tcp: [80]}
"""


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err

    return lines[0]


@pytest.mark.parametrize("command", [["up"], ["down"]])
def test_not_root_is_one_line_and_exit_2(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)

    code = main(command)

    assert code == 2
    assert _one_line(capsys.readouterr().err).startswith(
        "segscan-lab: must run as root"
    )


def test_a_spec_mistake_is_one_line_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    path = write_spec(tmp_path, SPEC + "  - {ip: 10.40.9.5}\n")

    code = main(["up", str(path)])

    assert code == 2
    assert _one_line(capsys.readouterr().err) == (
        f"segscan-lab: {path}:7: host 10.40.9.5 is outside every subnet"
    )


def test_usage_mistakes_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["sideways"])

    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.fixture
def no_lab() -> Iterator[None]:
    require_no_lab()
    try:
        yield
    finally:
        # main() pointed structlog at capsys's stream, which is closed by now.
        structlog.reset_defaults()
        lab.down()


@pytest.mark.root
def test_up_status_and_down(
    tmp_path: Path, no_lab: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(write_spec(tmp_path, SPEC))
    codes = [main(["up", spec, "--network-only"])]
    up_out = capsys.readouterr().out
    codes.append(main(["up", spec, "--network-only"]))
    again_err = capsys.readouterr().err
    codes.append(main(["status"]))
    status_out = capsys.readouterr().out
    codes.append(main(["status", "--json"]))
    status = json.loads(capsys.readouterr().out)
    codes.append(main(["down"]))
    down_out = capsys.readouterr().out

    assert codes == [0, 2, 0, 0, 0]
    assert up_out.startswith("lab up: 2 subnets, 1 workloads")
    assert _one_line(again_err) == (
        "segscan-lab: a lab is already up (/run/segscan-lab/state.json): "
        "run `segscan-lab down` first"
    )
    assert "sgl-agent-b" in status_out
    assert "10.40.2.5" in status_out
    assert status["coordinator_url"] is None
    assert status["healthy"] is True
    assert status["subnets"]["a"]["namespace"] == "sgl-agent-a"
    assert status["alive"]["workload-10.40.2.5"] is True
    assert down_out.startswith("lab down: ended 1 processes, removed 6 namespaces")


@pytest.mark.root
def test_status_without_a_lab_is_exit_2(
    no_lab: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--json"])

    assert code == 2
    assert _one_line(capsys.readouterr().err) == "segscan-lab: no lab is up"
