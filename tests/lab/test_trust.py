"""The lab's keys, scopes and token, and the reduced privileges agents run with."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.scope import load_approved_scope
from deploy.lab import trust
from deploy.lab.cli import FOUNDING_SPEC
from deploy.lab.spec import load_spec
from deploy.lab.topology import Topology, plan
from protocol.signing import key_id, load_private_key, load_public_key


@pytest.fixture(scope="module")
def founding() -> Topology:
    return plan(load_spec(FOUNDING_SPEC))


@pytest.fixture
def prepared(founding: Topology, tmp_path: Path) -> Path:
    for node in founding.agents:
        (tmp_path / "agents" / node.subnet.name).mkdir(parents=True)
    trust.prepare(tmp_path, founding)
    return tmp_path


def test_every_agent_gets_a_verifiable_scope_of_every_lab_subnet(
    prepared: Path, founding: Topology
) -> None:
    env = trust.agent_env(prepared, "corp-b")

    scope = load_approved_scope(
        Path(env["SEGSCAN_SCOPE"]), Path(env["SEGSCAN_SCOPE_KEY"]), "corp-b"
    )

    assert scope.subnets == ("corp-b",)
    assert scope.max_rate_pps == trust.MAX_RATE_PPS
    assert {str(d.network) for d in scope.destinations} == {
        str(node.subnet.cidr) for node in founding.agents
    }
    assert all(d.udp == ((1, 1023),) for d in scope.destinations)


def test_coordinator_and_agents_get_matching_keys(prepared: Path) -> None:
    coordinator = trust.coordinator_env(prepared)
    agent = trust.agent_env(prepared, "cde-c")

    signing = load_private_key(Path(coordinator["SEGSCAN_SIGNING_KEY"]))
    verifying = load_public_key(Path(agent["SEGSCAN_COORDINATOR_KEY"]))
    own = load_private_key(Path(agent["SEGSCAN_AGENT_KEY"]))
    known = load_public_key(Path(coordinator["SEGSCAN_AGENT_KEYS"]) / "cde-c.pub")
    assert key_id(signing.public_key()) == key_id(verifying)
    assert key_id(own.public_key()) == key_id(known)


def test_private_material_is_not_world_readable(prepared: Path) -> None:
    private = trust.trust_dir(prepared) / "private"
    token = prepared / trust.TOKEN_FILE

    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) >= 32
    assert (
        stat.S_IMODE((prepared / "agents" / "corp-a" / "agent-key.pem").stat().st_mode)
        == 0o600
    )


def test_an_agent_runs_with_only_cap_net_raw() -> None:
    argv = trust.agent_command(
        (sys.executable, "-c", "print(open('/proc/self/status').read())"), 0
    )
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")

    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)

    status = dict(
        line.split(":\t", 1) for line in done.stdout.splitlines() if ":\t" in line
    )
    assert int(status["CapEff"], 16) == 1 << 13  # CAP_NET_RAW alone
    assert int(status["CapBnd"], 16) == 1 << 13
    assert status["NoNewPrivs"].strip() == "1"
    unprivileged = trust.unprivileged_agents()
    assert (status["Uid"].split()[0] != "0") == unprivileged
