"""The agent's systemd unit: hardened as the issue asks, and valid to systemd."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "deploy/aws/segscan-agent.service"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def settings(text: str) -> dict[str, list[str]]:
    """Every key of the unit with all the values it is given, in order."""
    found: defaultdict[str, list[str]] = defaultdict(list)
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[f"{section}.{key}"].append(value)

    return dict(found)


def test_the_agent_runs_as_its_own_user_with_raw_sockets_only() -> None:
    unit = settings(UNIT.read_text())

    assert unit["Service.User"] == ["segscan-agent"]
    assert unit["Service.AmbientCapabilities"] == ["CAP_NET_RAW"]
    assert unit["Service.CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert unit["Service.NoNewPrivileges"] == ["yes"]


def test_the_system_is_read_only_to_the_agent() -> None:
    unit = settings(UNIT.read_text())

    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.ProtectHome"] == ["yes"]
    assert unit["Service.PrivateTmp"] == ["yes"]
    assert unit["Service.PrivateDevices"] == ["yes"]
    assert unit["Service.StateDirectory"] == ["segscan-agent"]
    assert "ReadWritePaths" not in {k.split(".")[1] for k in unit}
    for key in (
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert unit[f"Service.{key}"] == ["yes"], key


def test_the_agent_is_restarted_and_finds_its_subnet_itself() -> None:
    unit = settings(UNIT.read_text())
    environment = " ".join(unit["Service.Environment"])

    assert unit["Service.Restart"] == ["always"]
    assert unit["Service.ExecStart"] == ["/opt/segscan/venv/bin/agent run"]
    assert "SEGSCAN_STATE_DIR=/var/lib/segscan-agent" in environment
    assert "SEGSCAN_SUBNET" not in UNIT.read_text(), "one image serves every subnet"
    assert unit["Install.WantedBy"] == ["multi-user.target"]


def _verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a stub: verify checks that it exists."""
    stub = tmp_path / "agent"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/segscan/venv/bin/agent", str(stub)))

    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Unknown or misspelt settings are only warnings: any output fails the test."""
    run = subprocess.run(
        [str(ANALYZE), "verify", str(_verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert run.returncode == 0
    assert run.stderr == ""


@needs_systemd_analyze
def test_systemd_rates_the_units_exposure_low(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", str(_verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if "--offline" in run.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit offline")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout)

    assert level is not None, run.stdout[-500:]
    assert float(level.group(1)) <= 2.5
