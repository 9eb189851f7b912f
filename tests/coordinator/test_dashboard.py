"""The dashboard: runs list, a run's live view with matrix and graph, the full
report, the live figures and the evidence bundle, all served by the coordinator."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from coordinator import evidence, live
from coordinator.auth import AgentKeys
from coordinator.runs import RunManager
from coordinator.service import make_app
from coordinator.vault import Vault


@pytest.fixture
async def client(
    run_manager: RunManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("SEGSCAN_STATE_DIR", str(tmp_path / "state"))
    run_manager.vault = Vault(tmp_path / "evidence")
    app = make_app(run_manager, AgentKeys({}), "t" * 40)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def settled(client: TestClient[Any, Any], founding: dict[str, Any]) -> dict[str, Any]:
    """The founding report, settled after the client's vault was set up."""
    return founding


async def test_the_runs_page_lists_the_run(
    client: TestClient[Any, Any], settled: dict[str, Any]
) -> None:
    reply = await client.get("/")
    page = await reply.text()

    assert reply.status == 200
    assert f'href="/runs/{settled["run"]}"' in page
    assert "v-fail" in page


async def test_the_run_page_shows_the_hole_in_matrix_and_graph(
    client: TestClient[Any, Any], settled: dict[str, Any]
) -> None:
    reply = await client.get("/runs/latest")
    page = await reply.text()

    assert '<td class="v-fail" data-src="corp-b" data-dst="cde-c"' in page
    assert '<g class="edge violation" data-src="corp-b" data-dst="cde-c">' in page
    assert 'id="live-pairs_done">54<' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_the_full_report_is_served_as_html(
    client: TestClient[Any, Any], settled: dict[str, Any]
) -> None:
    reply = await client.get(f"/runs/{settled['run']}/report.html")

    assert reply.content_type == "text/html"
    assert settled["policy"]["sha256"] in await reply.text()


async def test_live_figures_of_a_running_run_name_silent_agents(
    client: TestClient[Any, Any],
    run_manager: RunManager,
    founding_policy: Path,
) -> None:
    from coordinator.policy import load_policy

    run = await run_manager.start(load_policy(founding_policy))
    await run_manager.store.touch_agent("corp-a@x", "corp-a", 1e12, None)

    figures = await (await client.get(f"/v1/runs/{run.id}/live")).json()

    assert (figures["pairs"], figures["pairs_done"], figures["finished"]) == (
        54,
        0,
        False,
    )
    assert "corp-a" not in figures["silent_agents"]
    assert "corp-b" in figures["silent_agents"]
    assert len(figures["silent_agents"]) == 11


async def test_the_evidence_endpoint_hands_out_the_signed_bundle(
    client: TestClient[Any, Any], settled: dict[str, Any], tmp_path: Path
) -> None:
    from coordinator.vault import write_tree

    reply = await (await client.get(f"/v1/runs/{settled['run']}/evidence")).json()
    write_tree(
        tmp_path / "copy",
        {p: base64.b64decode(d) for p, d in reply["files"].items()},
    )

    assert evidence.verify_bundle(tmp_path / "copy").ok


async def test_an_unknown_run_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/runs/nope")).status == 404
    assert (await client.get("/v1/runs/nope/live")).status == 404


def test_silence_threshold_is_half_a_minute() -> None:
    assert live.SILENT_S == 30.0
