"""Fixtures of the coordinator's report tests: a founding-case report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.runs import RunManager
from protocol.messages import Assignment
from tests.conftest import ResultFor
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
