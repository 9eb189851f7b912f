"""Fixtures shared by the suite: the founding policy, moto's SQS, a coordinator store.

The store, run manager and result builder serve tests/coordinator; they import
the coordinator only when used, so other packages' tests never depend on it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from coordinator.runs import RunManager
    from coordinator.store import Store
    from protocol.messages import Assignment, Finding, Result
    from tests.postgres import PostgresServer

FOUNDING_POLICY = Path(__file__).parents[1] / "deploy/lab/founding/policy.yaml"
START_S = 20.0  # how long a spawned server may take to answer


@pytest.fixture
def founding_policy() -> Path:
    """The founding case's policy file: 9 cde and 3 corp subnets."""
    return FOUNDING_POLICY


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store on an SQLite file of its own."""
    from coordinator.store import Store

    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server of the session's own (tests/postgres.py)."""
    from tests.postgres import PostgresServer

    try:
        server = PostgresServer.start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start PostgreSQL for the storage tests: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")

    return server.wiped_database()


@pytest.fixture
async def any_store(db_url: str) -> AsyncIterator[Store]:
    """A real store, once on SQLite and once on PostgreSQL."""
    from coordinator.store import Store

    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def dispatched() -> list[Assignment]:
    """Every assignment the ``run_manager`` fixture was asked to dispatch."""
    return []


@pytest.fixture
def run_manager(store: Store, dispatched: list[Assignment]) -> RunManager:
    """A run manager on the real store whose dispatcher only records."""
    from coordinator.dispatch import Dispatcher, QueueConfig
    from coordinator.runs import RunManager

    class RecordingDispatcher(Dispatcher):
        async def send(self, assignments: Sequence[Assignment]) -> None:
            dispatched.extend(assignments)

    return RunManager(store, RecordingDispatcher(QueueConfig()))


ResultFor = Callable[..., "Result"]


@pytest.fixture
def result_for() -> ResultFor:
    """Build the result an agent would post for an assignment, full coverage."""
    from protocol.messages import Coverage, Result
    from protocol.ports import count

    def build(assignment: Assignment, *findings: Finding, **fields: object) -> Result:
        addresses = sum(IPv4Network(t).num_addresses for t in assignment.targets)
        probes = addresses * (count(assignment.tcp) + count(assignment.udp))
        values: dict[str, object] = {
            "assignment_id": assignment.id,
            "run_id": assignment.run_id,
            "src": assignment.src,
            "dst": assignment.dst,
            "agent": f"{assignment.src}@test",
            "engine": "connect",
            "started_at": assignment.issued_at + 1,
            "finished_at": assignment.issued_at + 2,
            "coverage": Coverage(probes, probes, len(findings), assignment.passes),
            "findings": findings,
        }

        return Result(**(values | fields))  # type: ignore[arg-type]

    return build


HttpProcess = Callable[[list[str], str, dict[str, str] | None], None]


@pytest.fixture
def http_process(tmp_path: Path) -> Iterator[HttpProcess]:
    """Start a process that serves HTTP, once it answers; stop it after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], health_url: str, env: dict[str, str] | None) -> None:
        log = tmp_path / f"{Path(argv[0]).name}-{len(procs)}.log"
        procs.append(_start(argv, health_url, log, env))

    try:
        yield start
    finally:
        for proc in procs:
            _stop(proc)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of moto's server mode on loopback, stopped after the session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = _start(argv, url + "/moto-api/", log, None)
    try:
        yield url
    finally:
        _stop(proc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]

    return port


def _start(
    argv: list[str], health_url: str, log: Path, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(health_url, timeout=1):
                return proc
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    _stop(proc)
    raise RuntimeError(f"{argv[0]} did not answer at {health_url}; see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
