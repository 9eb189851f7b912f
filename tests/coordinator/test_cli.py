"""The `coordinator` command as users run it: exit codes and one-line errors.

Error cases run ``cli.main`` in-process or the installed console script; the
full case serves on loopback against moto's SQS and plays the agents by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from jsonschema import Draft202012Validator

from coordinator import cli, logs
from coordinator.errors import EXIT_INCONCLUSIVE, EXIT_PASS, EXIT_USAGE, EXIT_VIOLATION
from coordinator.report import schema
from protocol import codec, envelope
from protocol.messages import (
    Assignment,
    Coverage,
    Finding,
    PortState,
    Proto,
    Reason,
    Result,
)
from protocol.ports import count
from tests.coordinator.agentkeys import TOKEN, Keyring

InProcess = Callable[..., tuple[int, str, str]]
COORDINATOR = str(Path(sys.executable).parent / "coordinator")
REGION = "us-east-1"
SUBNETS = [f"cde-{c}" for c in "abcdefghi"] + ["corp-a", "corp-b", "corp-c"]
HOLE = ("corp-b", "cde-c")


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.make(tmp_path / "agent-keys")


@pytest.fixture
def env(tmp_path: Path, keyring: Keyring) -> dict[str, str]:
    """The environment of every command: no lab state, dummy AWS keys, the
    agents' keys and the operator token."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGSCAN_")}

    return clean | {
        "SEGSCAN_LAB_STATE": str(tmp_path / "no-lab.json"),
        "SEGSCAN_AGENT_KEYS": str(keyring.directory),
        "SEGSCAN_OPERATOR_TOKEN": TOKEN,
        # Keys and evidence bundles of a spawned coordinator stay in the test's dir.
        "SEGSCAN_STATE_DIR": str(tmp_path / "state"),
        "AWS_ACCESS_KEY_ID": "segscan-lab",
        "AWS_SECRET_ACCESS_KEY": "segscan-lab",
        "AWS_DEFAULT_REGION": REGION,
    }


def _cli(
    env: dict[str, str], *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COORDINATOR, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr

    return lines[0]


def test_run_with_a_bad_policy_is_exit_2_and_one_line_naming_file_and_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nsegments:\n  cde:\n    subnets: {cde-a: 10.0.1.0/33}\nrules: []\n"
    )

    done = _cli(env, "run", "--policy", str(policy))

    line = _one_line(done.stderr)
    assert done.returncode == EXIT_USAGE
    assert line.startswith(f"coordinator: {policy}:4: bad CIDR for subnet 'cde-a'")
    assert done.stdout == ""


@pytest.fixture
def in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> InProcess:
    """Run ``cli.main`` here, saving a subprocess: exit code, stdout, stderr."""
    # configure() would bind structlog to capsys's stream for the rest of the session.
    monkeypatch.setattr(logs, "configure", lambda: None)
    monkeypatch.delenv("SEGSCAN_COORDINATOR_URL", raising=False)
    monkeypatch.setenv("SEGSCAN_LAB_STATE", str(tmp_path / "no-lab.json"))

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()

        return code, out, err

    return run


def test_status_against_a_closed_port_is_exit_3_and_one_line(
    in_process: InProcess, unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"

    code, _, stderr = in_process("status", "--url", url)

    assert code == EXIT_INCONCLUSIVE
    assert _one_line(stderr).startswith(
        f"coordinator: {url}: cannot reach the coordinator"
    )


def test_rescan_with_a_pair_without_a_colon_is_exit_2(
    in_process: InProcess,
) -> None:
    code, _, stderr = in_process("rescan", "--pair", "nocolon")

    assert code == EXIT_USAGE
    assert _one_line(stderr) == (
        "coordinator: nocolon: --pair takes SRC:DST, two subnet names"
    )


def test_serve_with_a_bad_listen_address_is_exit_2(
    in_process: InProcess,
) -> None:
    code, _, stderr = in_process("serve", "--listen", "8470")

    assert code == EXIT_USAGE
    assert "--listen takes HOST:PORT" in _one_line(stderr)


def test_a_bad_argument_is_argparse_exit_2(
    in_process: InProcess,
) -> None:
    with pytest.raises(SystemExit) as info:
        in_process("report", "--format", "pdf")

    assert info.value.code == EXIT_USAGE


@pytest.fixture
def queue_env(env: dict[str, str], moto_endpoint: str) -> dict[str, str]:
    """The environment with SQS queues of this test's own for every subnet."""
    prefix = f"cli{uuid.uuid4().hex[:8]}-"
    sqs = _sqs(moto_endpoint)
    for subnet in SUBNETS:
        sqs.create_queue(QueueName=prefix + subnet)

    return env | {"SEGSCAN_SQS_ENDPOINT": moto_endpoint, "SEGSCAN_QUEUE_PREFIX": prefix}


def _sqs(endpoint: str) -> Any:
    session = botocore.session.get_session()

    return session.create_client(
        "sqs",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="segscan-lab",
        aws_secret_access_key="segscan-lab",
    )


@pytest.fixture
def served(
    queue_env: dict[str, str],
    tmp_path: Path,
    unused_tcp_port: int,
    http_process: Callable[[list[str], str, dict[str, str] | None], None],
) -> str:
    """`coordinator serve` on loopback with an SQLite file; its URL."""
    url = f"http://127.0.0.1:{unused_tcp_port}"
    db = f"sqlite+aiosqlite:///{tmp_path / 'coordinator.db'}"
    argv = [COORDINATOR, "serve", "--listen", f"127.0.0.1:{unused_tcp_port}"]
    http_process([*argv, "--db", db], url + "/healthz", queue_env)

    return url


def _receive_all(queue_env: dict[str, str], want: int) -> list[Assignment]:
    """Play the agents: take every assignment off the subnets' queues."""
    sqs = _sqs(queue_env["SEGSCAN_SQS_ENDPOINT"])
    prefix = queue_env["SEGSCAN_QUEUE_PREFIX"]
    urls = [sqs.get_queue_url(QueueName=prefix + s)["QueueUrl"] for s in SUBNETS]
    got: list[Assignment] = []
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        before = len(got)
        for url in urls:
            reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
            for message in reply.get("Messages", []):
                signed = envelope.open_envelope(
                    codec.from_text(message["Body"]), 1 << 18
                )
                got.append(codec.decode(signed.payload, Assignment))
        if len(got) == before:
            time.sleep(0.2)  # the run is still starting; leave it the CPU

    return got


def _post_result(url: str, assignment: Assignment, keyring: Keyring) -> int:
    probes = 14 * (count(assignment.tcp) + count(assignment.udp))
    hole = (assignment.src, assignment.dst) == HOLE
    findings = (
        (
            Finding(
                "10.0.3.5", Proto.TCP, ((5432, 5432),), PortState.OPEN, Reason.SYN_ACK
            ),
        )
        if hole
        else ()
    )
    result = Result(
        assignment_id=assignment.id,
        run_id=assignment.run_id,
        src=assignment.src,
        dst=assignment.dst,
        agent=f"{assignment.src}@test",
        engine="connect",
        started_at=assignment.issued_at,
        finished_at=assignment.issued_at + 1,
        coverage=Coverage(probes, probes, len(findings), assignment.passes),
        findings=findings,
    )
    request = urllib.request.Request(
        url + "/v1/results",
        data=keyring.seal(result, result.src),
        headers={"Content-Type": "application/msgpack"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        status: int = reply.status

    return status


@pytest.mark.slow
def test_a_founding_run_waits_for_the_verdict_and_reports_it(
    served: str,
    queue_env: dict[str, str],
    founding_policy: Path,
    in_process: InProcess,
    keyring: Keyring,
) -> None:
    """run --wait exits 1 on the planted hole; report and status agree."""
    env = queue_env | {"SEGSCAN_COORDINATOR_URL": served}
    waiting = subprocess.Popen(
        [COORDINATOR, "run", "--policy", str(founding_policy), "--wait", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        statuses = {
            _post_result(served, a, keyring) for a in _receive_all(queue_env, 54)
        }
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()

    waited = json.loads(out)
    reported, report_out, _ = in_process(
        "report", waited["run"], "--format", "json", "--url", served
    )
    status, status_out, _ = in_process("status", "--json", "--url", served)
    validator = Draft202012Validator(
        schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )

    assert statuses == {200}
    assert waiting.returncode == EXIT_VIOLATION, err
    assert list(validator.iter_errors(waited)) == []
    assert waited["verdict"] == "fail"
    assert [e["src"] + ":" + e["dst"] for e in waited["graph"]["edges"]] == [
        "corp-b:cde-c"
    ]
    assert reported == EXIT_VIOLATION
    assert json.loads(report_out) == waited
    assert status == EXIT_PASS
    assert [r["verdict"] for r in json.loads(status_out)["runs"]] == ["fail"]
