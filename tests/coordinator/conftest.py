"""Fixtures of the coordinator's report tests: a founding-case report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coordinator import service
from coordinator.runs import RunManager
from protocol.messages import Assignment
from tests.conftest import ResultFor
from tests.coordinator.agentkeys import TOKEN, Keyring
from tests.coordinator.sample import founding_report


@pytest.fixture
async def founding(
    run_manager: RunManager,
    dispatched: list[Assignment],
    result_for: ResultFor,
    founding_policy: Path,
) -> dict[str, Any]:
    """The settled report of the founding policy, its hole open (no lab)."""
    return await founding_report(run_manager, dispatched, result_for, founding_policy)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """Signing keys for every founding agent, and the directory of their halves."""
    return Keyring.make(tmp_path / "agent-keys")


@pytest.fixture
def service_app(
    run_manager: RunManager, monkeypatch: pytest.MonkeyPatch, keyring: Keyring
) -> web.Application:
    """The coordinator's application on the test store; its settler sleeps."""
    monkeypatch.setattr(service, "SETTLE_INTERVAL_S", 3600.0)

    return service.make_app(run_manager, keyring.agent_keys(), TOKEN)
