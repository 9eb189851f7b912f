"""Helpers for the lab's tests: spec files, a guard against a lab already up, probes.

Root tests build labs from network namespaces named ``sgl-*``; every probe goes
to an address inside a lab the test built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.lab import network
from deploy.lab.state import DEFAULT_STATE_DIR, LabState, SubnetState, state_path

PROBE = Path(__file__).with_name("probe.py")


def write_spec(directory: Path, text: str, name: str = "lab.yaml") -> Path:
    """Write a lab spec (dedented) and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())

    return path


def require_no_lab() -> None:
    """Skip unless root and no lab (or leftover of one) exists on this machine."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if state_path(DEFAULT_STATE_DIR).exists() or network.find_leftovers():
        pytest.skip("a segscan lab is up on this machine; not touching it")


@dataclass(frozen=True)
class Probed:
    """What one probe batch saw from one namespace."""

    outcomes: dict[tuple[str, str, int], str]
    icmp: list[dict[str, Any]]

    def errors_about(self, host: str) -> list[dict[str, Any]]:
        """ICMP errors (unreachable, time exceeded) quoting a packet to ``host``."""
        return [m for m in self.icmp if m["type"] in (3, 11) and m.get("dst") == host]

    def errors(self) -> list[dict[str, Any]]:
        """Every ICMP error that arrived."""
        return [m for m in self.icmp if m["type"] in (3, 11)]


def start_probes(namespace: str, probes: Sequence[tuple[str, str, int]]) -> Any:
    """Start a probe batch inside ``namespace``; finish it with ``finish_probes``."""
    return subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            str(PROBE),
            json.dumps(probes),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_probes(process: Any) -> Probed:
    """Wait for a probe batch and read what it saw."""
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    outcomes = {
        (r["kind"], r["host"], r["port"]): r["outcome"] for r in report["results"]
    }

    return Probed(outcomes, report["icmp"])


def run_in(namespace: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command inside ``namespace``."""
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def sample_state(tmp_path: Path) -> LabState:
    """A small lab state with one subnet, as `up` would write it."""
    return LabState(
        spec="/lab.yaml",
        state_dir=str(tmp_path),
        started_at="2025-01-01T00:00:00+00:00",
        region="us-east-1",
        sqs_endpoint="http://198.18.0.1:5000",
        coordinator_url="http://198.18.0.1:8470",
        management_bridge="sgl-mgmtbr",
        management_ip="198.18.0.1",
        transit_namespace="sgl-transit",
        routers={"cde": "sgl-vpc-cde"},
        subnets={
            "cde-a": SubnetState(
                cidr="10.0.1.0/28",
                vpc="cde",
                namespace="sgl-agent-cde-a",
                agent_ip="10.0.1.4",
                management_ip="198.18.0.10",
                queue="segscan-cde-a",
                agent_pid=42,
            )
        },
        hosts={},
        pids={"supervisor": 41, "agent-cde-a": 42},
    )
