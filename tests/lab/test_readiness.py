"""Waiting for lab processes: a dead one is named with its log; waits are bounded."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import msgspec
import pytest

from deploy.lab.errors import ServiceError
from deploy.lab.readiness import check_alive, wait_healthy
from deploy.lab.state import ServiceState, ServiceStatus
from tests.lab.helpers import sample_state


def test_a_process_that_exited_is_named_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "agent-cde-a.log"
    dead = ServiceState(
        status=ServiceStatus.RESTARTING,
        pid=None,
        starts=1,
        last_exit=3,
        log=str(log),
        netns="sgl-agent-cde-a",
    )
    state = msgspec.structs.replace(
        sample_state(tmp_path),
        services={"agent-cde-a": dead},
        pids={"supervisor": os.getpid()},
    )

    with pytest.raises(ServiceError) as caught:
        check_alive(tmp_path, state, ["agent-cde-a"])

    assert str(caught.value) == f"agent-cde-a exited with code 3; see {log}"
    assert caught.value.log == log


def test_waiting_for_health_gives_up_naming_url_and_log(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    with pytest.raises(ServiceError) as caught:
        wait_healthy(tmp_path, "coordinator", url, timeout_s=0.3)

    assert f"coordinator did not answer {url}/healthz within 0.3 s" in str(caught.value)
    assert caught.value.log == tmp_path / "logs" / "coordinator.log"
