"""Trust in the lab: agents refuse what they must, the run report shows it, and
the destination's witness sees no probe from a refused assignment.

One run (M) carries every refusal.  Its cde-a pairs scan corp normally and keep
it open for some seconds: they are the control, whose probes the witness at
corp-c's agent must see.  cde-b's only pair points outside its approved scope,
so the coordinator (as if compromised) signs a chunk the agent refuses.  Then,
on cde-b's queue, messages an attacker could craft with the coordinator's key
stolen from the lab, or without it: each targets corp-c, and the witness must
see nothing at all from cde-b.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.lab import trust
from protocol import codec, envelope
from protocol.envelope import Context, Signed
from protocol.messages import Assignment
from protocol.signing import key_id, load_private_key
from tests.e2e.conftest import cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

STATE_DIR = Path("/run/segscan-lab")
ROOT = Path(__file__).parents[2]
CONTROL_SRC, REFUSING_SRC = "cde-a", "cde-b"
WITNESSED = "corp-c"
POLICY_W = """\
version: 1
segments:
  cde: {subnets: {cde-b: 10.0.2.0/28}}
  corp: {subnets: {corp-c: 172.16.3.0/28}}
rules: [{from: cde-b, to: corp-c, expect: open}]
scan: {tcp: [22, 80, 443], rate: 1000, passes: 1}
"""
POLICY_M = """\
version: 1
segments:
  cde: {subnets: {cde-a: 10.0.1.0/28, cde-b: 10.0.2.0/28}}
  corp: {subnets: {corp-a: 172.16.1.0/28, corp-b: 172.16.2.0/28, corp-c: 172.16.3.0/28}}
  elsewhere: {subnets: {ghost: 10.0.99.0/28}}
rules:
  - {from: cde-a, to: corp, expect: open}
  - {from: cde-b, to: elsewhere, expect: closed}
scan: {tcp: "1-200", rate: 500, passes: 1}
"""


@dataclass(frozen=True)
class Outcome:
    """What run M reported and what the witness at corp-c's agent saw."""

    report: dict[str, Any]
    seen: dict[str, dict[str, str]]
    crafted: dict[str, str]  # what each crafted message was -> its assignment id
    replayed_id: str
    agent_ips: dict[str, str]


def _lab() -> dict[str, Any]:
    state: dict[str, Any] = json.loads((STATE_DIR / "state.json").read_text())
    return state


class Watch:
    """The witness of one address, inside the namespace that holds it."""

    def __init__(self, namespace: str, ip: str) -> None:
        argv = [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "tests.e2e.watch",
            ip,
        ]
        self._proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        assert self._proc.stdout.readline().strip() == "ready"

    def stop(self) -> dict[str, dict[str, str]]:
        out, _ = self._proc.communicate("stop\n", timeout=30)
        seen: dict[str, dict[str, str]] = json.loads(out)["seen"]
        return seen

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def _policy(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _sqs(endpoint: str) -> Any:
    return botocore.session.get_session().create_client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="segscan-lab",
        aws_secret_access_key="segscan-lab",
    )


def _body(assignment: Assignment, key: Ed25519PrivateKey, tamper: bool = False) -> str:
    payload = codec.encode(assignment)
    signature = key.sign(envelope.signing_input(Context.ASSIGNMENT, payload))
    if tamper:  # the bytes change after signing: a queue-side edit
        payload = payload.replace(b"172.16.3.0/28", b"172.16.3.0/29")
    signed = Signed(payload, key_id(key.public_key()), signature)
    return codec.to_text(msgspec.msgpack.encode(signed))


def _crafted(**fields: Any) -> Assignment:
    now = time.time()
    values: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "run_id": "crafted",
        "src": REFUSING_SRC,
        "dst": WITNESSED,
        "targets": ("172.16.3.0/28",),
        "tcp": ((22, 22), (80, 80), (443, 443)),
        "udp": (),
        "rate_pps": 1000,
        "passes": 1,
        "issued_at": now,
        "expires_at": now + 600,
    }
    return Assignment(**(values | fields))


def _chunk_of(run_id: str) -> Assignment:
    with contextlib.closing(sqlite3.connect(STATE_DIR / "coordinator.db")) as db:
        (data,) = db.execute(
            "SELECT assignment FROM chunks WHERE run_id = ?", (run_id,)
        ).fetchone()
    return codec.decode(data, Assignment)


def _started(policy: Path) -> str:
    done = cli("coordinator", "run", "--policy", str(policy), "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run"])


def _finished_report(run_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = cli("coordinator", "report", run_id, "--format", "json")
        report: dict[str, Any] = json.loads(shown.stdout)
        if report["finished_at"]:
            return report
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s} s")


def _send_crafted(
    sqs: Any, url: str, stolen: Ed25519PrivateKey, replay: Assignment
) -> dict[str, str]:
    """Put every crafted message on cde-b's queue; their assignment ids by kind."""
    now = time.time()
    stranger = Ed25519PrivateKey.generate()
    expired = _crafted(issued_at=now - 7200, expires_at=now - 3600)
    outside = _crafted(targets=("172.16.3.0/28", "10.0.99.0/28"))
    port = _crafted(udp=((5353, 5353),))
    rate = _crafted(rate_pps=2 * trust.MAX_RATE_PPS)
    tampered, unknown = _crafted(), _crafted()
    messages = {
        "bad-signature": (tampered, _body(tampered, stolen, tamper=True)),
        "unknown-key": (unknown, _body(unknown, stranger)),
        "expired": (expired, _body(expired, stolen)),
        "replayed": (replay, _body(replay, stolen)),
        "destination": (outside, _body(outside, stolen)),
        "port": (port, _body(port, stolen)),
        "rate": (rate, _body(rate, stolen)),
    }
    for _, body in messages.values():
        sqs.send_message(QueueUrl=url, MessageBody=body)

    return {name: assignment.id for name, (assignment, _) in messages.items()}


@pytest.fixture(scope="module")
def sqs(lab: None) -> Iterator[Any]:
    """A client of the lab's SQS, as an attacker with queue access has."""
    client = _sqs(_lab()["sqs_endpoint"])
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def outcome(sqs: Any, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    tmp = tmp_path_factory.mktemp("trust")
    state = _lab()
    subnets = state["subnets"]
    url = sqs.get_queue_url(QueueName=subnets[REFUSING_SRC]["queue"])["QueueUrl"]
    stolen = load_private_key(
        Path(trust.coordinator_env(STATE_DIR)["SEGSCAN_SIGNING_KEY"])
    )

    # A finished run whose chunk cde-b ran: the one to replay later.
    warm_up = cli(
        "coordinator",
        "run",
        "--policy",
        str(_policy(tmp, "w.yaml", POLICY_W)),
        "--wait",
        "--json",
    )
    replay = _chunk_of(json.loads(warm_up.stdout)["run"])

    watch = Watch(subnets[WITNESSED]["namespace"], subnets[WITNESSED]["agent_ip"])
    try:
        run_id = _started(_policy(tmp, "m.yaml", POLICY_M))
        crafted = _send_crafted(sqs, url, stolen, replay)
        report = _finished_report(run_id)
        seen = watch.stop()
    finally:
        watch.kill()
        # Refused messages stay in flight for minutes; later tests need none.
        sqs.purge_queue(QueueUrl=url)

    return Outcome(
        report,
        seen,
        crafted,
        replay.id,
        {name: s["agent_ip"] for name, s in subnets.items()},
    )


def _refusal(outcome: Outcome, reason: str, assignment: str | None) -> dict[str, Any]:
    found = [
        r
        for r in outcome.report["refusals"]
        if r["reason"] == reason and r["assignment"] == assignment
    ]
    assert found, f"no {reason} refusal of {assignment} in {outcome.report['refusals']}"
    return found[0]


def _nothing_from_refusing_agent(outcome: Outcome) -> None:
    assert outcome.agent_ips[REFUSING_SRC] not in outcome.seen


def test_the_witness_sees_the_control_probes(outcome: Outcome) -> None:
    """Without this the empty sightings below would prove nothing."""
    control = outcome.seen[outcome.agent_ips[CONTROL_SRC]]

    assert control["tcp"] == "1-200"
    verdicts = {(p["src"], p["dst"]): p["verdict"] for p in outcome.report["pairs"]}
    assert verdicts[(CONTROL_SRC, WITNESSED)] == "allowed"


def test_a_coordinator_signed_chunk_outside_the_scope_is_refused_and_inconclusive(
    outcome: Outcome,
) -> None:
    pair = next(p for p in outcome.report["pairs"] if p["src"] == REFUSING_SRC)

    assert pair["verdict"] == "inconclusive"
    assert (
        "refused: destination 10.0.99.1-10.0.99.14 outside approved scope"
        in (pair["reason"])
    )
    refusal = next(
        r
        for r in outcome.report["refusals"]
        if r["issued"] is True and r["reason"] == "out-of-scope-destination"
    )
    assert refusal["subnet"] == REFUSING_SRC


def test_a_bad_signature_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(outcome, "bad-signature", None)

    assert refusal["issued"] is None
    _nothing_from_refusing_agent(outcome)


def test_a_valid_signature_from_an_unknown_key_is_refused(outcome: Outcome) -> None:
    _refusal(outcome, "unknown-key", None)
    _nothing_from_refusing_agent(outcome)


def test_an_expired_assignment_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(outcome, "expired", outcome.crafted["expired"])

    assert refusal["issued"] is False  # signed with our key, never issued by us
    _nothing_from_refusing_agent(outcome)


def test_a_replayed_assignment_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(outcome, "replayed", outcome.replayed_id)

    assert refusal["issued"] is True  # a real chunk of the warm-up run
    _nothing_from_refusing_agent(outcome)


def test_a_destination_outside_the_scope_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(
        outcome, "out-of-scope-destination", outcome.crafted["destination"]
    )

    assert refusal["detail"] == "destination 10.0.99.0/28 outside approved scope"
    _nothing_from_refusing_agent(outcome)


def test_a_port_outside_the_scope_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(outcome, "out-of-scope-port", outcome.crafted["port"])

    assert refusal["detail"] == "udp/5353 to 172.16.3.0/28 outside approved scope"
    _nothing_from_refusing_agent(outcome)


def test_a_rate_above_the_scope_is_refused(outcome: Outcome) -> None:
    refusal = _refusal(outcome, "out-of-scope-rate", outcome.crafted["rate"])

    assert refusal["detail"] == (
        f"rate {2 * trust.MAX_RATE_PPS} pps above the approved {trust.MAX_RATE_PPS} pps"
    )
    _nothing_from_refusing_agent(outcome)


def test_the_text_report_lists_the_refusals(outcome: Outcome) -> None:
    shown = cli("coordinator", "report", outcome.report["run"], "--format", "text")

    assert shown.stdout.count("REFUSED") == len(outcome.report["refusals"])


def test_the_coordinator_refuses_garbage_and_stays_up(lab: None) -> None:
    request = urllib.request.Request(
        _lab()["coordinator_url"] + "/v1/results",
        data=b"\x00garbage",
        headers={"Content-Type": "application/msgpack"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    refused.value.close()
    health = cli("coordinator", "healthcheck")

    assert refused.value.code == 400
    assert health.returncode == 0


def test_starting_a_run_without_the_operator_token_is_refused(
    lab: None, tmp_path: Path
) -> None:
    policy = _policy(tmp_path, "p.yaml", POLICY_W)
    done = cli(
        "coordinator", "run", "--policy", str(policy), "--token", "not-the-token"
    )

    assert done.returncode == 2
    assert "operator token" in done.stderr
