"""What the coordinator refuses from agents and operators, and that it keeps serving.

Runs the real service (aiohttp test server) on a real store; agents are played
by keys of tests/coordinator/agentkeys.py.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from coordinator import intake
from coordinator.auth import load_agent_keys
from coordinator.errors import UsageError
from coordinator.runs import RunManager
from coordinator.tables import results
from protocol import codec, envelope
from protocol.envelope import Context
from protocol.messages import Assignment, Heartbeat, Refusal, Refused, Result
from protocol.signer import FileSigner
from tests.coordinator.agentkeys import TOKEN, Keyring

ResultFor = Callable[..., Result]
MSGPACK = {"Content-Type": "application/msgpack"}


@pytest.fixture
async def client(
    service_app: web.Application,
) -> AsyncIterator[TestClient[Any, Any]]:
    """A client without the operator token, as agents and strangers are."""
    async with TestClient(TestServer(service_app)) as test_client:
        yield test_client


@pytest.fixture
def policy_text(founding_policy: Path) -> str:
    return founding_policy.read_text()


@pytest.fixture
async def run_id(
    client: TestClient[Any, Any], policy_text: str, dispatched: list[Assignment]
) -> str:
    reply = await client.post(
        "/v1/runs",
        json={"policy": policy_text, "source": "founding.yaml"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert reply.status == 201
    return str((await reply.json())["run"])


async def _post(
    client: TestClient[Any, Any], path: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    # A stream, as a large body should be sent (aiohttp warns about raw bytes).
    reply = await client.post(path, data=io.BytesIO(body), headers=MSGPACK)
    return reply.status, await reply.json()


# --- results -----------------------------------------------------------------


async def test_a_signed_result_is_stored_with_the_key_that_signed_it(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
    run_manager: RunManager,
) -> None:
    result = result_for(dispatched[0])

    status, body = await _post(client, "/v1/results", keyring.seal(result, result.src))

    async with run_manager.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(results.c.key_id, results.c.body))).one()
    kid = FileSigner(keyring.keys[result.src]).key_id
    assert (status, body) == (200, {"status": "stored"})
    assert (row.key_id, row.body) == (kid, codec.encode(result))


async def test_an_unsigned_result_is_refused(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    run_manager: RunManager,
) -> None:
    with capture_logs() as logs:
        status, body = await _post(
            client, "/v1/results", codec.encode(result_for(dispatched[0]))
        )

    assert status == 400
    assert body["error"].startswith("invalid envelope message")
    assert await run_manager.store.results(run_id) == []
    [event] = [e for e in logs if e["event"] == "agent_post_rejected"]
    assert event["security_event"] is True


async def test_a_result_from_the_wrong_subnets_agent_is_refused(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
    run_manager: RunManager,
) -> None:
    """corp-b's agent cannot post corp-a's result, whatever the result claims."""
    chunk = next(a for a in dispatched if a.src == "corp-a")

    status, body = await _post(
        client, "/v1/results", keyring.seal(result_for(chunk), "corp-b")
    )

    assert status == 403
    assert body["error"] == "signed by the agent of 'corp-b', but speaks for 'corp-a'"
    assert await run_manager.store.results(run_id) == []


async def test_a_result_signed_by_an_unknown_key_is_refused(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
) -> None:
    stranger = FileSigner(Ed25519PrivateKey.generate())
    payload = codec.encode(result_for(dispatched[0]))
    sealed = await envelope.seal(payload, Context.RESULT, stranger)

    status, body = await _post(client, "/v1/results", sealed)

    assert status == 403
    assert body["error"].startswith("unknown agent key")


async def test_an_oversized_body_is_refused_before_it_is_read_whole(
    client: TestClient[Any, Any],
) -> None:
    big = b"\x00" * (intake.MAX_RESULT_BYTES + 1)

    status, body = await _post(client, "/v1/results", big)

    assert status == 413
    assert body["error"] == f"body over {intake.MAX_RESULT_BYTES} bytes"


async def test_an_oversized_heartbeat_is_refused(client: TestClient[Any, Any]) -> None:
    status, _ = await _post(
        client, "/v1/heartbeats", b"\x00" * (intake.MAX_NOTICE_BYTES + 1)
    )

    assert status == 413


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x00garbage", b"\x93\x01\x02\x03"])
async def test_garbage_bytes_are_refused(
    client: TestClient[Any, Any], garbage: bytes
) -> None:
    status, body = await _post(client, "/v1/results", garbage)

    assert status == 400
    assert body["error"].startswith("invalid envelope message")


async def test_an_unknown_message_version_is_refused_saying_so(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
) -> None:
    raw = msgspec.msgpack.decode(codec.encode(result_for(dispatched[0])))
    raw["version"] = 2
    signer = FileSigner(keyring.keys[dispatched[0].src])
    sealed = await envelope.seal(msgspec.msgpack.encode(raw), Context.RESULT, signer)

    status, body = await _post(client, "/v1/results", sealed)

    assert status == 400
    assert "unsupported protocol version 2 (this build speaks 1)" in body["error"]


async def test_an_unknown_envelope_version_is_refused_saying_so(
    client: TestClient[Any, Any], keyring: Keyring
) -> None:
    beat = Heartbeat(agent="corp-a@t", subnet="corp-a", sent_at=1.0)
    raw = msgspec.msgpack.decode(keyring.seal(beat, "corp-a"))
    raw["version"] = 9

    status, body = await _post(client, "/v1/heartbeats", msgspec.msgpack.encode(raw))

    assert status == 400
    assert "unsupported envelope version 9" in body["error"]


async def test_a_heartbeat_for_another_subnet_is_refused(
    client: TestClient[Any, Any], keyring: Keyring
) -> None:
    beat = Heartbeat(agent="cde-a@t", subnet="cde-a", sent_at=1.0)

    status, _ = await _post(client, "/v1/heartbeats", keyring.seal(beat, "corp-a"))

    assert status == 403


async def test_the_service_keeps_serving_during_and_after_hostile_posts(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    result_for: ResultFor,
    keyring: Keyring,
) -> None:
    hostile = [
        b"\x00" * (intake.MAX_RESULT_BYTES + 1),
        b"\xc1" * 1000,
        codec.encode(result_for(dispatched[0])),
        keyring.seal(result_for(dispatched[0]), "cde-i"),
    ] * 5

    async def health() -> int:
        return (await client.get("/healthz")).status

    statuses = await asyncio.gather(
        *(_post(client, "/v1/results", body) for body in hostile),
        *(health() for _ in range(10)),
    )
    after = await _post(
        client,
        "/v1/results",
        keyring.seal(result_for(dispatched[1]), dispatched[1].src),
    )

    refused = [s for s in statuses[: len(hostile)]]
    assert {status for status, _ in refused} <= {400, 403, 413}
    assert statuses[len(hostile) :] == [200] * 10
    assert after == (200, {"status": "stored"})


# --- refusals ----------------------------------------------------------------


def _refusal(subnet: str, **fields: Any) -> Refusal:
    values: dict[str, Any] = {
        "agent": f"{subnet}@t",
        "subnet": subnet,
        "message_id": "m-1",
        "body_sha256": "0" * 64,
        "reason": Refused.BAD_SIGNATURE,
        "detail": "message m-1: bad signature",
        "received_at": 1.0,
    }
    return Refusal(**(values | fields))


async def test_refusals_show_in_the_run_report(
    client: TestClient[Any, Any],
    run_id: str,
    dispatched: list[Assignment],
    keyring: Keyring,
) -> None:
    """Both a refused chunk of the run and an unverifiable message during it."""
    chunk = next(a for a in dispatched if a.src == "corp-a")
    scoped = _refusal(
        "corp-a",
        reason=Refused.DESTINATION,
        detail="destination 10.9.9.0/24 outside approved scope",
        assignment_id=chunk.id,
        run_id=run_id,
    )
    unverifiable = _refusal("corp-b")

    first = await _post(client, "/v1/refusals", keyring.seal(scoped, "corp-a"))
    second = await _post(client, "/v1/refusals", keyring.seal(unverifiable, "corp-b"))
    report = await (await client.get(f"/v1/runs/{run_id}/report")).json()

    assert first == (200, {"status": "recorded", "issued": True})
    assert second == (200, {"status": "recorded", "issued": None})
    assert [
        (r["subnet"], r["reason"], r["assignment"]) for r in report["refusals"]
    ] == [
        ("corp-a", "out-of-scope-destination", chunk.id),
        ("corp-b", "bad-signature", None),
    ]


async def test_a_refused_assignment_we_never_issued_is_flagged_as_forged(
    client: TestClient[Any, Any], run_id: str, keyring: Keyring
) -> None:
    notice = _refusal("corp-a", reason=Refused.RATE, assignment_id="not-ours")

    with capture_logs() as logs:
        status, body = await _post(
            client, "/v1/refusals", keyring.seal(notice, "corp-a")
        )

    assert (status, body) == (200, {"status": "recorded", "issued": False})
    [event] = [e for e in logs if e["event"] == "assignment_forged"]
    assert (event["security_event"], event["assignment"]) == (True, "not-ours")


async def test_a_refusal_for_another_subnet_is_refused(
    client: TestClient[Any, Any], keyring: Keyring
) -> None:
    status, _ = await _post(
        client, "/v1/refusals", keyring.seal(_refusal("corp-a"), "cde-a")
    )

    assert status == 403


# --- operators ---------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_starting_a_run_needs_the_operator_token(
    client: TestClient[Any, Any],
    policy_text: str,
    dispatched: list[Assignment],
    header: str | None,
) -> None:
    headers = {"Authorization": header} if header else {}

    reply = await client.post(
        "/v1/runs",
        json={"policy": policy_text, "source": "f.yaml"},
        headers=headers,
    )

    assert reply.status == 401
    assert "operator token" in (await reply.json())["error"]
    assert dispatched == []


async def test_a_rescan_needs_the_operator_token(
    client: TestClient[Any, Any], run_id: str
) -> None:
    reply = await client.post("/v1/rescans", json={"src": "corp-a", "dst": "cde-a"})

    assert reply.status == 401


async def test_reading_needs_no_token(
    client: TestClient[Any, Any], run_id: str
) -> None:
    statuses = [
        (await client.get(path)).status
        for path in ("/healthz", "/v1/runs", f"/v1/runs/{run_id}", "/v1/agents")
    ]

    assert statuses == [200, 200, 200, 200]


def test_agent_keys_are_one_per_subnet(tmp_path: Path, keyring: Keyring) -> None:
    agent_keys = load_agent_keys(keyring.directory)
    kid = FileSigner(keyring.keys["cde-c"]).key_id

    assert len(agent_keys) == 12
    assert agent_keys.subnet(kid) == "cde-c"


def test_no_agent_keys_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no agent keys"):
        load_agent_keys(tmp_path)


def test_a_bad_agent_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "corp-a.pub").write_text("not a key")

    with pytest.raises(UsageError) as caught:
        load_agent_keys(tmp_path)

    assert caught.value.subject == str(tmp_path / "corp-a.pub")
