"""The HTTP service on a real store: result intake, heartbeats, runs, reports."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from coordinator import report
from coordinator.errors import QueueError
from coordinator.runs import RunManager
from protocol import codec
from protocol.messages import (
    Assignment,
    Finding,
    Heartbeat,
    PortState,
    Proto,
    Reason,
    Result,
)
from tests.coordinator.agentkeys import TOKEN, Keyring

ResultFor = Callable[..., Result]
MSGPACK = {"Content-Type": "application/msgpack"}
HOLE = ("corp-b", "cde-c")
OPEN_PG = Finding(
    "10.0.3.5", Proto.TCP, ((5432, 5432),), PortState.OPEN, Reason.SYN_ACK
)


@pytest.fixture
async def client(
    service_app: web.Application,
) -> AsyncIterator[TestClient[Any, Any]]:
    """A client of the service holding the operator token; the settler sleeps."""
    server = TestServer(service_app)
    async with TestClient(server, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


@pytest.fixture
def founding_text(founding_policy: Path) -> str:
    return founding_policy.read_text(encoding="utf-8")


@pytest.fixture
async def run_id(client: TestClient[Any, Any], founding_text: str) -> str:
    """A full run of the founding policy, started through the API."""
    reply = await client.post(
        "/v1/runs", json={"policy": founding_text, "source": "founding.yaml"}
    )
    assert reply.status == 201
    body = await reply.json()

    return str(body["run"])


async def _post_result(
    client: TestClient[Any, Any], result: Result, keyring: Keyring
) -> tuple[int, Any]:
    body = keyring.seal(result, result.src)
    reply = await client.post("/v1/results", data=body, headers=MSGPACK)

    return reply.status, await reply.json()


async def test_healthz_says_ok(client: TestClient[Any, Any]) -> None:
    reply = await client.get("/healthz")

    assert reply.status == 200
    assert await reply.json() == {"status": "ok"}


async def test_a_run_of_the_founding_policy_records_and_sends_54_chunks(
    client: TestClient[Any, Any],
    run_id: str,
    run_manager: RunManager,
    dispatched: list[Assignment],
) -> None:
    progress = await (await client.get(f"/v1/runs/{run_id}")).json()
    listed = await (await client.get("/v1/runs")).json()

    assert len(await run_manager.store.chunks(run_id)) == 54
    assert len(dispatched) == 54
    assert {(a.src, a.dst) for a in dispatched} == {
        (p.src, p.dst) for p in await run_manager.store.pairs(run_id)
    }
    assert (progress["chunks"], progress["chunks_done"]) == (54, 0)
    assert [r["run"] for r in listed] == [run_id]


async def test_a_bad_policy_is_a_400_naming_file_and_line(
    client: TestClient[Any, Any], dispatched: list[Assignment]
) -> None:
    policy = (
        "version: 1\nsegments:\n  cde:\n    subnets: {cde-a: 10.0.1.0/33}\nrules: []\n"
    )

    reply = await client.post("/v1/runs", json={"policy": policy, "source": "p.yaml"})

    body = await reply.json()
    assert reply.status == 400
    assert body["error"].startswith("p.yaml:4: bad CIDR for subnet 'cde-a'")
    assert (body["kind"], body["subject"]) == ("PolicyError", "p.yaml:4")
    assert dispatched == []


async def test_a_run_request_that_is_not_json_is_a_400(
    client: TestClient[Any, Any],
) -> None:
    reply = await client.post("/v1/runs", data=b"policy: yes")

    assert reply.status == 400


async def test_a_queue_failure_is_a_503(
    client: TestClient[Any, Any],
    run_manager: RunManager,
    founding_text: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(assignments: Sequence[Assignment]) -> None:
        raise QueueError("segscan-cde-a", "no such queue")

    monkeypatch.setattr(run_manager.dispatcher, "send", refuse)

    reply = await client.post(
        "/v1/runs", json={"policy": founding_text, "source": "f.yaml"}
    )

    body = await reply.json()
    assert reply.status == 503
    assert body["error"] == "segscan-cde-a: no such queue"


async def test_a_result_is_stored_then_a_copy_is_a_duplicate(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
) -> None:
    result = result_for(dispatched[0])

    first = await _post_result(client, result, keyring)
    second = await _post_result(client, result, keyring)

    assert first == (200, {"status": "stored"})
    assert second == (200, {"status": "duplicate"})


async def test_garbage_result_bytes_are_a_400(
    client: TestClient[Any, Any], dispatched: list[Assignment]
) -> None:
    reply = await client.post("/v1/results", data=b"\x00garbage", headers=MSGPACK)

    body = await reply.json()
    assert reply.status == 400
    assert body["error"].startswith("invalid envelope message")


async def test_an_assignment_posted_as_a_result_is_a_400(
    client: TestClient[Any, Any], run_id: str, dispatched: list[Assignment]
) -> None:
    reply = await client.post(
        "/v1/results", data=codec.encode(dispatched[0]), headers=MSGPACK
    )

    assert reply.status == 400


async def test_a_result_for_an_unknown_assignment_is_a_404(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
) -> None:
    status, body = await _post_result(
        client, result_for(dispatched[0], assignment_id="nope"), keyring
    )

    assert (status, body) == (404, {"status": "unknown"})


async def test_a_result_from_the_wrong_subnet_is_a_409(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    run_manager: RunManager,
    keyring: Keyring,
) -> None:
    other = "corp-c" if dispatched[0].src != "corp-c" else "corp-b"
    status, body = await _post_result(
        client, result_for(dispatched[0], src=other), keyring
    )

    assert (status, body) == (409, {"status": "wrong-subnet"})
    assert await run_manager.store.results(run_id) == []


async def test_heartbeats_are_204_and_listed_as_agents(
    client: TestClient[Any, Any], keyring: Keyring
) -> None:
    beats = [
        Heartbeat(agent="corp-a@h1", subnet="corp-a", sent_at=1.0),
        Heartbeat(agent="cde-a@h2", subnet="cde-a", sent_at=1.0, assignment_id="c9"),
    ]
    statuses = [
        (
            await client.post(
                "/v1/heartbeats", data=keyring.seal(b, b.subnet), headers=MSGPACK
            )
        ).status
        for b in beats
    ]

    agents = await (await client.get("/v1/agents")).json()

    assert statuses == [204, 204]
    assert sorted((a["agent"], a["subnet"], a["assignment"]) for a in agents) == [
        ("cde-a@h2", "cde-a", "c9"),
        ("corp-a@h1", "corp-a", None),
    ]
    assert all(0 <= a["last_seen_s_ago"] < 60 for a in agents)


async def test_a_bad_heartbeat_is_a_400(client: TestClient[Any, Any]) -> None:
    reply = await client.post("/v1/heartbeats", data=b"\xc1", headers=MSGPACK)

    assert reply.status == 400


async def test_rescan_of_an_unknown_subnet_is_a_404(
    client: TestClient[Any, Any], run_id: str
) -> None:
    reply = await client.post("/v1/rescans", json={"src": "corp-z", "dst": "cde-a"})

    body = await reply.json()
    assert reply.status == 404
    assert body["subject"] == "corp-z"


async def test_rescan_creates_a_run_with_both_directions(
    client: TestClient[Any, Any],
    run_id: str,
    run_manager: RunManager,
    dispatched: list[Assignment],
) -> None:
    # Until the base run ends, its leases hold both subnets' rate budgets.
    await run_manager.store.finish_run(run_id, "pass", {}, time.time())

    reply = await client.post("/v1/rescans", json={"src": "corp-a", "dst": "cde-a"})

    rescan = (await reply.json())["run"]
    pairs = await run_manager.store.pairs(rescan)
    assert reply.status == 201
    assert rescan != run_id
    assert sorted((p.src, p.dst) for p in pairs) == [
        ("cde-a", "corp-a"),
        ("corp-a", "cde-a"),
    ]
    assert len(dispatched) == 54 + 2


async def test_the_report_of_an_unknown_run_is_a_404(
    client: TestClient[Any, Any],
) -> None:
    reply = await client.get("/v1/runs/nope/report")

    assert reply.status == 404


async def test_settling_finishes_the_run_and_the_report_has_the_verdicts(
    client: TestClient[Any, Any],
    run_id: str,
    run_manager: RunManager,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
) -> None:
    for assignment in dispatched:
        hole = (assignment.src, assignment.dst) == HOLE
        status, _ = await _post_result(
            client, result_for(assignment, *([OPEN_PG] if hole else [])), keyring
        )
        assert status == 200

    settled = await run_manager.settle()

    body = await (await client.get(f"/v1/runs/{run_id}/report")).json()
    progress = await (await client.get(f"/v1/runs/{run_id}")).json()
    verdicts = {(p["src"], p["dst"]): p["verdict"] for p in body["pairs"]}
    validator = Draft202012Validator(
        report.schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert settled == [run_id]
    assert body["verdict"] == "fail"
    assert verdicts.pop(HOLE) == "fail"
    assert sorted(set(verdicts.values())) == ["allowed", "pass"]
    assert list(verdicts.values()).count("pass") == 26
    assert body["graph"]["edges"] == [
        {"src": "corp-b", "dst": "cde-c", "reachable_ports": 1, "violation": True}
    ]
    assert (progress["finished"], progress["verdict"]) == (True, "fail")
    assert list(validator.iter_errors(body)) == []
