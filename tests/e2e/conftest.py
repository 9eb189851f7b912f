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
import yaml

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


# The founding policy scans every port, which takes minutes (the demo); the
# suite scans the lab's listeners, the hole, the rejecting rule and the common
# service ports, both passes, in about a minute.
E2E_SCAN = {
    "tcp": (
        "20-23,25,53,80,110,111,135,139,143,389,443,445,465,514,587,636,873,993,"
        "995,1080,1433,1521,2049,2375,2376,3000,3306,3389,4443,5000,5432,5601,5672,"
        "5900,5984,6379,6443,7001,8000,8008,8080-8090,8443,8888,9000,9042,9090,"
        "9200,9300,9418,11211,15672,27017"
    ),
    "udp": [53, 123, 161, 500],
    "passes": 2,
    "rate": 20_000,
}


@pytest.fixture(scope="session")
def e2e_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The founding policy with the suite's shorter scan."""
    policy = yaml.safe_load((FOUNDING / "policy.yaml").read_text())
    policy["scan"] = E2E_SCAN
    path = tmp_path_factory.mktemp("e2e") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))

    return path


@pytest.fixture(scope="session")
def founding_run(lab: None, e2e_policy: Path) -> tuple[int, dict[str, Any]]:
    done = cli(
        "coordinator",
        "run",
        "--policy",
        str(e2e_policy),
        "--wait",
        "--json",
    )
    assert done.stdout, done.stderr

    return done.returncode, json.loads(done.stdout)
