"""The ``agent`` command: scan output, usage errors, check, and run's clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent import cli, syn
from agent.cli import main, run_checks
from agent.config import AgentConfig
from agent.identity import AgentIdentityError

if TYPE_CHECKING:
    from conftest import FakeCoordinator, SqsQueue, TrustKit

AGENT = [str(Path(sys.executable).with_name("agent"))]  # the installed entry point


@pytest.fixture
def open_port() -> Iterator[int]:
    """A loopback port whose kernel completes handshakes (nobody accepts)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that answers RST: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_scan_prints_a_table_of_findings_and_the_coverage(
    open_port: int, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "127.0.0.1", "-p", f"{open_port},{closed_port}"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == ["IP", "PROTO", "PORTS", "STATE", "REASON"]
    assert sorted(line.split() for line in lines[1:3]) == sorted(
        [
            ["127.0.0.1", "tcp", str(open_port), "open", "connected"],
            ["127.0.0.1", "tcp", str(closed_port), "closed", "refused"],
        ]
    )
    assert lines[3] == ("connect: planned 2, sent 2, answered 2, passes 1, dropped 0")


def test_scan_json_is_one_object_with_port_ranges(
    open_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["scan", "127.0.0.2/31", "-p", str(open_port), "--engine", "connect", "--json"]
    )

    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["engine"] == "connect"
    assert report["findings"] == [
        {
            "ip": ip,
            "proto": "tcp",
            "ports": [[open_port, open_port]],
            "state": "closed",
            "reason": "refused",
            "ttl": None,
        }
        for ip in ("127.0.0.2", "127.0.0.3")
    ]
    assert report["accounting"] == {
        "planned": 2,
        "sent": 2,
        "answered": 2,
        "passes": 1,
        "dropped": 0,
    }


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["scan", "127.0.0.1"], "the following arguments are required: -p/--ports"),
        (["scan", "127.0.0.1", "-p", "0-5"], "bad port range '0-5'"),
        (["scan", "nowhere", "-p", "1"], "'nowhere' does not appear"),
        (["scan", "127.0.0.1", "-p", "1", "--rate", "0"], "'0' must be positive"),
        (["scan", "127.0.0.1", "-p", "1", "--engine", "fast"], "invalid choice"),
        (["launch"], "invalid choice: 'launch'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert len(err.splitlines()) == 1
    assert complaint in err


def test_the_installed_command_reports_a_bad_target_without_a_traceback() -> None:
    done = subprocess.run(
        [*AGENT, "scan", "::1", "-p", "22"], capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 2
    assert done.stderr == (
        "agent scan: argument TARGETS: '::1' is not an IPv4 address or network\n"
    )


def test_an_engine_this_host_lacks_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(syn, "raw_sockets_available", lambda: False)

    code = main(["scan", "127.0.0.1", "-p", "1", "--engine", "syn"])

    assert code == 2
    assert capsys.readouterr().err == (
        "agent: syn: the SYN engine needs root or CAP_NET_RAW\n"
    )


def test_check_without_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SEGSCAN_SUBNET", raising=False)

    code = main(["check"])

    assert code == 2
    assert (
        capsys.readouterr().err
        == "agent: SEGSCAN_SUBNET: not set; the agent needs it\n"
    )


def test_check_is_inconclusive_when_queue_and_coordinator_are_unreachable(
    monkeypatch: pytest.MonkeyPatch,
    moto_endpoint: str,
    aws_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEGSCAN_SUBNET", "no-such-subnet")
    monkeypatch.setenv("SEGSCAN_SQS_ENDPOINT", moto_endpoint)
    monkeypatch.setenv("SEGSCAN_COORDINATOR_URL", "http://127.0.0.1:9")

    code = main(["check", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert code == 3
    assert report["ok"] is False
    assert {c["name"]: c["ok"] for c in report["checks"]} == {
        "engine": True,
        "queue": False,
        "coordinator": False,
    }
    assert set(report["capabilities"]) == {"raw_sockets", "root"}


async def test_check_passes_with_queue_and_coordinator_up(
    agent_config: AgentConfig,
) -> None:
    checks = await run_checks(agent_config)

    assert [(c.name, c.ok) for c in checks] == [
        ("engine", True),
        ("queue", True),
        ("coordinator", True),
        ("clock", True),
    ]


async def test_run_stops_cleanly_on_sigterm(
    sqs_queue: SqsQueue,
    coordinator: FakeCoordinator,
    moto_endpoint: str,
    trust_kit: TrustKit,
) -> None:
    trust_kit.approve(sqs_queue.subnet)
    env = {
        **os.environ,
        **trust_kit.env(),
        "SEGSCAN_SUBNET": sqs_queue.subnet,
        "SEGSCAN_SQS_ENDPOINT": moto_endpoint,
        "SEGSCAN_COORDINATOR_URL": coordinator.url,
        "SEGSCAN_ALLOW_ROOT": "1",  # the suite may run as root
    }
    process = await asyncio.create_subprocess_exec(
        *AGENT, "run", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        # The loop is up once it beats.
        await asyncio.wait_for(coordinator.got_heartbeat.wait(), timeout=15)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()]
    assert process.returncode == 0
    # The scope names loopback only: no address of its own for a witness.
    assert events == [
        "agent_privileges",
        "agent_started",
        "witness_unavailable",
        "agent_stopped",
    ]


def test_scope_verify_prints_the_scope_and_refuses_a_tampered_one(
    trust_kit: TrustKit, capsys: pytest.CaptureFixture[str]
) -> None:
    scope = trust_kit.approve("corp-a")
    owner = trust_kit.config(
        subnet="corp-a",
        agent_id="a",
        queue_name="q",
        sqs_endpoint=None,
        region="us-east-1",
        coordinator_url="http://127.0.0.1:9",
        engine="auto",
    ).scope_key

    good = main(["scope", "verify", str(scope), "--key", str(owner)])
    printed = capsys.readouterr().out
    scope.write_text(scope.read_text().replace("127.0.0.0/8", "0.0.0.0/0"))
    bad = main(["scope", "verify", str(scope), "--key", str(owner)])

    assert good == 0
    assert "signature ok" in printed
    assert "destination 127.0.0.0/8: tcp 1-65535, udp 1-65535" in printed
    assert bad == 2
    assert capsys.readouterr().err == f"agent: {scope}: bad signature\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to run as root")
def test_run_as_root_is_refused_in_one_line(trust_kit: TrustKit) -> None:
    env = {
        **os.environ,
        **trust_kit.env(),
        "SEGSCAN_SUBNET": "corp-a",
        "SEGSCAN_COORDINATOR_URL": "http://127.0.0.1:9",
    }
    env.pop("SEGSCAN_ALLOW_ROOT", None)

    done = subprocess.run(
        [*AGENT, "run"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2
    assert done.stderr.startswith("agent: SEGSCAN_ALLOW_ROOT: refusing to run as root")
    assert done.stderr.count("\n") == 1


def test_run_without_a_subnet_asks_the_metadata_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One image serves every subnet: ``agent run`` learns its subnet on EC2."""
    seen: list[str] = []

    async def resolve(network_map: object) -> str:
        return "cde-a"

    async def serve(config: AgentConfig) -> None:
        seen.append(config.subnet)

    monkeypatch.delenv("SEGSCAN_SUBNET", raising=False)
    monkeypatch.setenv("SEGSCAN_COORDINATOR_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(cli, "resolve_subnet", resolve)
    monkeypatch.setattr(cli, "serve", serve)

    code = main(["run", "--allow-root"])

    assert code == 0
    assert seen == ["cde-a"]


def test_run_where_no_metadata_service_answers_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def resolve(network_map: object) -> str:
        raise AgentIdentityError("http://imds", "no answer")

    monkeypatch.delenv("SEGSCAN_SUBNET", raising=False)
    monkeypatch.setattr(cli, "resolve_subnet", resolve)

    code = main(["run"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "SEGSCAN_SUBNET" in err
    assert "no answer" in err
