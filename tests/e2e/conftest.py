"""Shared fixtures of the end-to-end tests: one founding lab and run per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FOUNDING = Path(__file__).parents[2] / "deploy" / "lab" / "founding"


# The console scripts of the environment running the tests, wherever PATH points.
SCRIPTS = Path(sys.executable).parent


def cli(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    """Run one of segscan's commands and capture what it says."""
    command = [str(SCRIPTS / args[0]), *args[1:]]

    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.fixture(scope="session")
def lab() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if Path("/run/segscan-lab/state.json").exists():
        pytest.fail("a lab is already up; take it down with `segscan-lab down`")
    up = cli("segscan-lab", "up", str(FOUNDING / "lab.yaml"))
    assert up.returncode == 0, up.stderr
    try:
        yield
    finally:
        down = cli("segscan-lab", "down")
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def founding_run(lab: None) -> tuple[int, dict[str, Any]]:
    done = cli(
        "coordinator",
        "run",
        "--policy",
        str(FOUNDING / "policy.yaml"),
        "--wait",
        "--json",
    )
    assert done.stdout, done.stderr

    return done.returncode, json.loads(done.stdout)
