"""A lab with its processes: up starts and checks them, down removes everything.

SQS is the real moto server; the coordinator and the agents are stand-ins
(tests/lab/standins.py) that serve and use the same addresses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from deploy.lab import lab, network, processes
from deploy.lab.errors import ServiceError
from deploy.lab.services import ControlPlane, agent_dir
from deploy.lab.spec import LabSpec, load_spec
from deploy.lab.state import LabState, read_state, state_path
from tests.lab.helpers import require_no_lab, write_spec

pytestmark = pytest.mark.root

SPEC = """\
version: 1
subnets:
  pci-a:  {cidr: 10.30.1.0/28, vpc: pci}
  corp-a: {cidr: 172.30.1.0/28, vpc: corp}
hosts:
  - {ip: 10.30.1.5, tcp: [443]}
firewall:
  - {from: pci, to: corp, action: accept}
"""
STANDINS = Path(__file__).with_name("standins.py")
WAIT_S = 10.0
PROCESSES = {
    "supervisor",
    "moto",
    "coordinator",
    "agent-pci-a",
    "agent-corp-a",
    "workload-10.30.1.5",
}


def _control(state_dir: Path, agent: tuple[str, ...] | None = None) -> ControlPlane:
    fake_coordinator = (sys.executable, str(STANDINS), "coordinator", "198.18.0.1:8470")

    return ControlPlane(
        moto=ControlPlane.default(state_dir).moto,
        coordinator=fake_coordinator,
        agent=agent or (sys.executable, str(STANDINS), "agent"),
    )


def _spec(directory: Path) -> LabSpec:
    return load_spec(write_spec(directory, SPEC))


def _wait_for_file(path: Path) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)

    return json.loads(path.read_text())


@pytest.fixture(scope="class")
def running(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, LabState]]:
    require_no_lab()
    directory = tmp_path_factory.mktemp("lab")
    state_dir = directory / "state"
    try:
        state = lab.up(
            _spec(directory), control=_control(state_dir), state_dir=state_dir
        )
        yield state_dir, state
    finally:
        lab.down(state_dir)


class TestRunningLab:
    """One lab with every process, shared by the tests of this class."""

    def test_up_runs_sqs_the_coordinator_and_one_agent_per_subnet(
        self,
        running: tuple[Path, LabState],
    ) -> None:
        _, state = running

        assert state.sqs_endpoint == "http://198.18.0.1:5000"
        assert state.coordinator_url == "http://198.18.0.1:8470"
        assert set(state.pids) == PROCESSES
        assert all(processes.alive(pid) for pid in state.pids.values())
        assert state.subnets["pci-a"].agent_pid == state.pids["agent-pci-a"]

    def test_agents_run_in_their_namespace_with_the_runtime_environment(
        self,
        running: tuple[Path, LabState],
    ) -> None:
        state_dir, state = running
        report = _wait_for_file(agent_dir(state_dir, "corp-a") / "standin.json")
        in_namespace = network.namespace_pids("sgl-agent-corp-a")

        assert state.subnets["corp-a"].agent_pid in in_namespace
        assert report["health"] == [200, '{"status":"ok"}']
        assert report["env"] == {
            "SEGSCAN_SUBNET": "corp-a",
            "SEGSCAN_COORDINATOR_URL": "http://198.18.0.1:8470",
            "SEGSCAN_SQS_ENDPOINT": "http://198.18.0.1:5000",
            "SEGSCAN_STATE_DIR": str(agent_dir(state_dir, "corp-a")),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "segscan-lab",
            "AWS_SECRET_ACCESS_KEY": "segscan-lab",
        }

    def test_every_subnet_has_its_queue(self, running: tuple[Path, LabState]) -> None:
        client = botocore.session.get_session().create_client(
            "sqs",
            region_name="us-east-1",
            endpoint_url="http://198.18.0.1:5000",
            aws_access_key_id="segscan-lab",
            aws_secret_access_key="segscan-lab",
        )
        try:
            urls = client.list_queues()["QueueUrls"]
            redrive = json.loads(
                client.get_queue_attributes(
                    QueueUrl=next(u for u in urls if u.endswith("/segscan-corp-a")),
                    AttributeNames=["RedrivePolicy"],
                )["Attributes"]["RedrivePolicy"]
            )
        finally:
            client.close()

        assert sorted(url.rsplit("/", 1)[1] for url in urls) == [
            "segscan-corp-a",
            "segscan-corp-a-dlq",
            "segscan-pci-a",
            "segscan-pci-a-dlq",
        ]
        assert redrive["deadLetterTargetArn"].endswith(":segscan-corp-a-dlq")
        assert int(redrive["maxReceiveCount"]) == 5

    def test_a_dead_agent_is_restarted(self, running: tuple[Path, LabState]) -> None:
        state_dir, state = running
        first = state.subnets["pci-a"].agent_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_S
        while (now := read_state(state_dir)) is None or now.subnets[
            "pci-a"
        ].agent_pid in (
            None,
            first,
        ):
            assert time.monotonic() < deadline, "the agent was not restarted"
            time.sleep(0.1)

        assert now.services["agent-pci-a"].starts == 2
        assert now.services["agent-pci-a"].last_exit == -signal.SIGKILL
        assert lab.status(state_dir).alive["agent-pci-a"]

    def test_status_lists_every_process_alive(
        self, running: tuple[Path, LabState]
    ) -> None:
        state_dir, _ = running
        status = lab.status(state_dir)

        assert status.healthy
        assert set(status.alive) == PROCESSES


def test_up_reports_an_agent_that_dies_with_its_log(tmp_path: Path) -> None:
    require_no_lab()
    state_dir = tmp_path / "state"
    dying = (sys.executable, "-c", "import sys; print('no scope'); sys.exit(3)")
    try:
        with pytest.raises(ServiceError) as caught:
            lab.up(
                _spec(tmp_path), control=_control(state_dir, dying), state_dir=state_dir
            )
    finally:
        lab.down(state_dir)

    assert "exited with code 3; see " in str(caught.value)
    assert caught.value.subject in ("agent-pci-a", "agent-corp-a")
    assert caught.value.log == state_dir / "logs" / f"{caught.value.subject}.log"
    assert "no scope" in caught.value.log.read_text()


def test_up_gives_up_on_a_coordinator_that_never_answers(tmp_path: Path) -> None:
    require_no_lab()
    state_dir = tmp_path / "state"
    mute = (sys.executable, "-c", "import time; time.sleep(60)")
    control = ControlPlane(ControlPlane.default(state_dir).moto, mute, mute)
    try:
        with pytest.raises(ServiceError) as caught:
            lab.up(
                _spec(tmp_path), control=control, state_dir=state_dir, ready_timeout_s=4
            )
    finally:
        lab.down(state_dir)

    assert str(caught.value) == (
        "coordinator did not answer http://198.18.0.1:8470/healthz within 4 s; "
        f"see {state_dir}/logs/coordinator.log"
    )


def test_down_removes_processes_namespaces_links_and_state(tmp_path: Path) -> None:
    require_no_lab()
    state_dir = tmp_path / "state"
    try:
        state = lab.up(_spec(tmp_path), control=None, state_dir=state_dir)
    finally:
        removed = lab.down(state_dir)

    assert not network.find_leftovers()
    assert not any(processes.alive(pid) for pid in state.pids.values())
    assert (removed.namespaces, removed.links) == (6, 3)
    assert not state_path(state_dir).exists()
    assert (state_dir / "logs" / "supervisor.log").exists()


def test_down_cleans_up_after_a_crash_without_state(tmp_path: Path) -> None:
    """A killed supervisor and a lost state file: found by name and marker."""
    require_no_lab()
    state_dir = tmp_path / "state"
    try:
        state = lab.up(_spec(tmp_path), control=None, state_dir=state_dir)
        os.kill(state.pids["supervisor"], signal.SIGKILL)
        state_path(state_dir).unlink()
    finally:
        lab.down(state_dir)
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout

    assert "sgl-" not in namespaces
    assert not network.find_leftovers()
    assert not any(processes.alive(pid) for pid in state.pids.values())
    assert processes.marked() == []
