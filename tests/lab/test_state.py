"""The state file: written whole, read back, absent when broken."""

from __future__ import annotations

import json
from pathlib import Path

from deploy.lab.state import read_state, state_path, write_state
from tests.lab.helpers import sample_state


def test_state_round_trips_with_the_keys_other_tools_read(tmp_path: Path) -> None:
    write_state(tmp_path, sample_state(tmp_path))
    raw = json.loads(state_path(tmp_path).read_text())

    assert read_state(tmp_path) == sample_state(tmp_path)
    assert raw["coordinator_url"] == "http://198.18.0.1:8470"
    assert raw["subnets"]["cde-a"]["agent_pid"] == 42
    assert {"spec", "sqs_endpoint", "region", "state_dir", "pids"} <= raw.keys()
    assert list(tmp_path.iterdir()) == [state_path(tmp_path)]


def test_missing_or_broken_state_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    state_path(tmp_path).write_text("{")

    assert read_state(tmp_path) is None
