"""Faults on the founding lab: each run ends with every chunk settled exactly once
and every finding the lab's ground truth demands (tests/e2e/checker.py).

Each test runs the founding policy over all 54 pairs with a short port list,
injects one fault while it runs, and hands the settled run to the checker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.e2e import checker
from tests.e2e.conftest import cli

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(400)]

SETTLE_TIMEOUT_S = 240.0
OUTAGE_S = 60.0
FAULT_TABLE = "segscan-fault"  # an nftables table of the tests' own
LOGS = Path("/run/segscan-lab/logs")


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return checker.fault_policy(tmp_path_factory.mktemp("faults"))


def _start(policy: Path) -> str:
    done = cli("coordinator", "run", "--policy", str(policy), "--json")
    assert done.returncode == 0, done.stderr

    return str(json.loads(done.stdout)["run"])


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = checker.lab_state()["services"][name]

    return service


def _done(run_id: str) -> int:
    return int(checker.get(f"/v1/runs/{run_id}/accounting")["counts"].get("done", 0))


def _log_has(service: str, event: str) -> bool:
    return f'"event": "{event}"' in (LOGS / f"{service}.log").read_text()


def _sqs() -> Any:
    return botocore.session.get_session().create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=checker.lab_state()["sqs_endpoint"],
        aws_access_key_id="segscan-lab",
        aws_secret_access_key="segscan-lab",
    )


def test_an_agent_killed_mid_chunk_comes_back_and_finishes_the_run(
    lab: None, policy: Path
) -> None:
    """kill -9 while a chunk is in hand: the supervisor restarts the agent,
    which hands the chunk back at once and scans it again."""
    run_id = _start(policy)
    leases = Path(checker.lab_state()["state_dir"]) / "agents/corp-b/leases"
    _wait_for(lambda: any(leases.glob("*.json")), 30, "corp-b to hold a chunk")
    before = _service("agent-corp-b")

    os.kill(before["pid"], signal.SIGKILL)
    report = checker.wait_settled(run_id, SETTLE_TIMEOUT_S)

    checker.check(run_id, report)
    after = _service("agent-corp-b")
    assert after["starts"] > before["starts"]
    assert after["pid"] != before["pid"]
    assert _log_has("agent-corp-b", "leases_restored")


def test_a_coordinator_restarted_mid_run_loses_nothing(lab: None, policy: Path) -> None:
    run_id = _start(policy)
    _wait_for(lambda: _done(run_id) > 0, 60, "a first result")
    before = _service("coordinator")

    os.kill(before["pid"], signal.SIGKILL)
    report = checker.wait_settled(run_id, SETTLE_TIMEOUT_S)

    checker.check(run_id, report)
    assert _service("coordinator")["starts"] > before["starts"]


@pytest.fixture
def outage() -> Iterator[Callable[[], None]]:
    """Drop every packet agents send to the coordinator's port, until undone."""
    rules = (
        f"table ip {FAULT_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority -10; policy accept;\n"
        f'    iifname "sgl-mgmtbr" tcp dport 8470 drop\n'
        "  }\n"
        "}\n"
    )

    def begin() -> None:
        subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)

    try:
        yield begin
    finally:
        subprocess.run(
            ["nft", "delete", "table", "ip", FAULT_TABLE],
            capture_output=True,
            check=False,
        )


def test_a_coordinator_unreachable_for_a_minute_gets_every_result_after(
    lab: None, policy: Path, outage: Callable[[], None]
) -> None:
    """Results wait in the agents' spools, messages stay leased, then all land."""
    run_id = _start(policy)
    _wait_for(lambda: _done(run_id) > 0, 60, "a first result")

    outage()
    time.sleep(5)  # posts in flight when it began land or fail
    during = _done(run_id)
    time.sleep(OUTAGE_S - 5)
    after_outage = _done(run_id)
    subprocess.run(["nft", "delete", "table", "ip", FAULT_TABLE], check=True)
    report = checker.wait_settled(run_id, SETTLE_TIMEOUT_S)

    checker.check(run_id, report)
    assert during == after_outage < 54
    assert any(_log_has(f"agent-{s}", "result_spooled") for s in _subnets())


def test_the_same_message_delivered_twice_is_counted_once(
    lab: None, policy: Path
) -> None:
    """A copy of a queued assignment: run twice, or refused as a replay and
    dead-lettered; either way the chunk counts once and the copy is on record."""
    run_id = _start(policy)
    sqs = _sqs()
    url = sqs.get_queue_url(QueueName="segscan-corp-a")["QueueUrl"]
    body = _peek(sqs, url)

    sqs.send_message(QueueUrl=url, MessageBody=body)
    report = checker.wait_settled(run_id, SETTLE_TIMEOUT_S)
    _wait_for(lambda: _copy_on_record(run_id), 90, "the copy to be accounted for")

    books = checker.check(run_id, report)
    assert books.accounting["dead_letters"] or books.accounting["late_results"]


def test_an_undecodable_message_is_never_run_and_lands_on_the_dead_letter_queue(
    lab: None, policy: Path
) -> None:
    poison = f"not an assignment {time.time()}"
    run_id = _start(policy)
    sqs = _sqs()
    url = sqs.get_queue_url(QueueName="segscan-corp-a")["QueueUrl"]

    sqs.send_message(QueueUrl=url, MessageBody=poison)
    report = checker.wait_settled(run_id, SETTLE_TIMEOUT_S)
    _wait_for(lambda: _dead_lettered(poison) is not None, 90, "the dead letter")

    checker.check(run_id, report)
    letter = _dead_lettered(poison)
    assert letter is not None
    assert (letter["chunk"], letter["run"]) == (None, None)
    assert letter["queue"] == "segscan-corp-a-dlq"
    assert letter["receive_count"] >= 5
    assert _log_has("agent-corp-a", "assignment_rejected")


def _subnets() -> list[str]:
    return sorted(checker.lab_state()["subnets"])


def _peek(sqs: Any, url: str) -> str:
    """A message body on the queue, left there for the agent."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0
        )
        for message in reply.get("Messages", []):
            return str(message["Body"])
    raise AssertionError("no message to copy on the queue")


def _copy_on_record(run_id: str) -> bool:
    """The copy was run and kept as a late result, or refused and dead-lettered."""
    books = checker.get(f"/v1/runs/{run_id}/accounting")

    return bool(books["dead_letters"] or books["late_results"])


def _dead_lettered(body: str) -> dict[str, Any] | None:
    letters = checker.get("/v1/deadletters")

    return next((dict(d) for d in letters if d["body"] == body), None)
