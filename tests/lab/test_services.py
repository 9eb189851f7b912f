"""The lab's processes: commands, clean environments and the plan file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploy.lab.cli import FOUNDING_SPEC
from deploy.lab.services import (
    MARKER,
    ControlPlane,
    Service,
    agents,
    control,
    read_plan,
    workloads,
    write_plan,
)
from deploy.lab.spec import load_spec
from deploy.lab.topology import Topology, plan


@pytest.fixture(scope="module")
def founding() -> Topology:
    return plan(load_spec(FOUNDING_SPEC))


def test_agents_get_the_runtime_contract_environment(
    founding: Topology, tmp_path: Path
) -> None:
    plane = ControlPlane.default(tmp_path)
    agent = next(s for s in agents(plane, founding, tmp_path) if s.subnet == "corp-b")

    assert agent.name == "agent-corp-b"
    assert agent.netns == "sgl-agent-corp-b"
    assert agent.argv[0] == "setpriv"
    assert "--bounding-set=-all,+net_raw" in agent.argv
    assert agent.argv[-3:] == ("--", str(Path(sys.executable).parent / "agent"), "run")
    assert agent.log == str(tmp_path / "logs" / "agent-corp-b.log")
    assert {
        key: agent.env[key]
        for key in (
            "SEGSCAN_SUBNET",
            "SEGSCAN_COORDINATOR_URL",
            "SEGSCAN_SQS_ENDPOINT",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "SEGSCAN_STATE_DIR",
        )
    } == {
        "SEGSCAN_SUBNET": "corp-b",
        "SEGSCAN_COORDINATOR_URL": "http://198.18.0.1:8470",
        "SEGSCAN_SQS_ENDPOINT": "http://198.18.0.1:5000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "segscan-lab",
        "AWS_SECRET_ACCESS_KEY": "segscan-lab",
        "SEGSCAN_STATE_DIR": str(tmp_path / "agents" / "corp-b"),
    }


def test_environments_are_clean_and_marked(founding: Topology, tmp_path: Path) -> None:
    plane = ControlPlane.default(tmp_path)
    every = [
        *workloads(founding, tmp_path),
        *control(plane, tmp_path),
        *agents(plane, founding, tmp_path),
    ]

    assert all(s.env[MARKER] == str(tmp_path) for s in every)
    assert all(s.env["HOME"] == str(tmp_path) for s in every)
    assert not any("proxy" in key.lower() for s in every for key in s.env)


def test_moto_and_coordinator_serve_the_management_address(tmp_path: Path) -> None:
    moto, coordinator = control(ControlPlane.default(tmp_path), tmp_path)

    assert moto.argv[1:] == ("-m", "moto.server", "-H", "198.18.0.1", "-p", "5000")
    assert moto.netns is None
    assert coordinator.argv[1:] == (
        "serve",
        "--listen",
        "198.18.0.1:8470",
        "--db",
        f"sqlite+aiosqlite:///{tmp_path}/coordinator.db",
    )


def test_workloads_listen_on_their_ports_in_their_namespace(
    founding: Topology, tmp_path: Path
) -> None:
    workload = next(
        s for s in workloads(founding, tmp_path) if s.name == "workload-172.16.1.5"
    )

    assert workload.netns == "sgl-host-172.16.1.5"
    assert workload.argv[1:] == (
        "-m",
        "deploy.lab.workload",
        "--tcp",
        "80,443",
        "--udp",
        "53,123",
    )


def test_plan_round_trips(tmp_path: Path) -> None:
    services = (Service("x", ("true",), {"A": "b"}, "/tmp/x.log", "sgl-x", "x"),)
    write_plan(tmp_path, services)

    assert read_plan(tmp_path).services == services
