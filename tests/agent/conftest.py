"""Fixtures for the agent's tests: loopback listeners, moto's SQS, a fake coordinator,
and the keys and approved scope of a test agent.

Every probe in these tests goes to 127.0.0.0/8 and nowhere else.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
import structlog
from aiobotocore.session import get_session
from aiohttp import web

from agent.config import AgentConfig
from protocol import codec, envelope
from protocol.envelope import Context, Signed
from protocol.messages import Assignment, Heartbeat, Refusal, Result, ScanKind
from protocol.scope import signature_line, signature_path
from protocol.signing import generate_key, key_id, public_path

MOTO_START_TIMEOUT_S = 20.0


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """The CLI configures structlog globally; give every test the defaults back."""
    yield
    structlog.reset_defaults()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def closed_ports(host: str, count: int) -> tuple[list[socket.socket], int]:
    """Sockets bound (never listening) to ``count`` consecutive ports of ``host``.

    A bound, non-listening TCP port answers a SYN with RST, and nobody else can
    take it while the sockets live.  Returns the sockets and the first port.
    """
    for _ in range(50):
        first = free_port(host)
        if first + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind((host, port))
        except OSError:
            for sock in held:
                sock.close()
            continue
        return held, first
    raise RuntimeError(f"no {count} consecutive free ports on {host}")


@dataclass
class Listeners:
    """Loopback sockets a test opened; closed by the fixture."""

    sockets: list[socket.socket] = field(default_factory=list)
    servers: list[asyncio.Server] = field(default_factory=list)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)

    async def open_tcp(self, host: str) -> int:
        """A port on ``host`` that completes the handshake."""
        server = await asyncio.start_server(_hang_up, host, 0)
        self.servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def closed_tcp(self, host: str, count: int = 1) -> int:
        """The first of ``count`` consecutive ports on ``host`` that answer RST."""
        held, first = closed_ports(host, count)
        self.sockets += held
        return first

    def filtered_tcp(self, host: str) -> int:
        """A port on ``host`` whose SYNs the kernel drops: its accept queue is full."""
        server = socket.socket()
        self.sockets.append(server)
        server.bind((host, 0))
        server.listen(0)  # room for one connection, which the next line takes
        port: int = server.getsockname()[1]
        self.sockets.append(socket.create_connection((host, port), timeout=2))
        return port

    def silent_udp(self, host: str) -> int:
        """A UDP port on ``host`` that takes datagrams and never answers."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets.append(sock)
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port

    async def echo_udp(self, host: str) -> int:
        """A UDP port on ``host`` that sends every datagram back."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=(host, 0))
        self.transports.append(transport)
        port: int = transport.get_extra_info("sockname")[1]
        return port


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    opened = Listeners()
    try:
        yield opened
    finally:
        for server in opened.servers:
            server.close()
            await server.wait_closed()
        for transport in opened.transports:
            transport.close()
        for sock in opened.sockets:
            sock.close()


# --- SQS: moto's server mode on loopback -----------------------------------


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto server that lives for the whole test session."""
    port = free_port()
    log_path = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + MOTO_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(f"moto server did not listen on {port} in time")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's dummy credentials, whatever the machine has configured."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "segscan-lab")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "segscan-lab")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@dataclass
class SqsQueue:
    """A fresh queue on moto and a raw client to look behind the agent's back."""

    subnet: str
    name: str
    url: str
    client: Any

    async def send(self, body: str) -> None:
        await self.client.send_message(QueueUrl=self.url, MessageBody=body)

    async def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages."""
        reply = await self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
        attributes = reply["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
async def sqs_queue(moto_endpoint: str, aws_env: None) -> AsyncIterator[SqsQueue]:
    subnet = f"t{uuid.uuid4().hex[:10]}"
    name = f"segscan-{subnet}"
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_endpoint
    ) as client:
        reply = await client.create_queue(QueueName=name)
        yield SqsQueue(subnet, name, reply["QueueUrl"], client)
        await client.delete_queue(QueueUrl=reply["QueueUrl"])


# --- a stand-in for the coordinator's agent-facing HTTP API ----------------


@dataclass
class FakeCoordinator:
    """Records what the agent posts; answers ``result_status`` to results.

    Posts are signed envelopes; the fake keeps them (``envelopes``) and their
    payloads, and leaves checking signatures to the tests that care.
    """

    url: str = ""
    results: list[Result] = field(default_factory=list)
    heartbeats: list[Heartbeat] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    envelopes: list[Signed] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    result_status: int = 200
    got_result: asyncio.Event = field(default_factory=asyncio.Event)
    got_heartbeat: asyncio.Event = field(default_factory=asyncio.Event)

    async def _payload(self, request: web.Request) -> bytes:
        signed = envelope.open_envelope(await request.read(), 1 << 23)
        self.envelopes.append(signed)
        return signed.payload

    async def post_result(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        result = codec.decode(await self._payload(request), Result)
        if self.result_status != 200:
            return web.json_response({"error": "not today"}, status=self.result_status)
        self.results.append(result)
        self.got_result.set()
        return web.json_response({"status": "stored"})

    async def post_heartbeat(self, request: web.Request) -> web.Response:
        self.heartbeats.append(codec.decode(await self._payload(request), Heartbeat))
        self.got_heartbeat.set()
        return web.Response(status=204)

    async def post_refusal(self, request: web.Request) -> web.Response:
        self.refusals.append(codec.decode(await self._payload(request), Refusal))
        return web.json_response({"status": "recorded", "issued": None})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


@pytest.fixture
async def coordinator() -> AsyncIterator[FakeCoordinator]:
    fake = FakeCoordinator()
    app = web.Application()
    app.router.add_post("/v1/results", fake.post_result)
    app.router.add_post("/v1/heartbeats", fake.post_heartbeat)
    app.router.add_post("/v1/refusals", fake.post_refusal)
    app.router.add_get("/healthz", fake.healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
def agent_config(
    sqs_queue: SqsQueue,
    coordinator: FakeCoordinator,
    moto_endpoint: str,
    trust_kit: TrustKit,
) -> AgentConfig:
    trust_kit.approve(sqs_queue.subnet)
    return trust_kit.config(
        subnet=sqs_queue.subnet,
        agent_id=f"{sqs_queue.subnet}@test",
        queue_name=sqs_queue.name,
        sqs_endpoint=moto_endpoint,
        region="us-east-1",
        coordinator_url=coordinator.url,
        engine=ScanKind.CONNECT,  # runner tests assert connect-scan reasons
    )


# --- keys and approved scope -----------------------------------------------

LOOPBACK_SCOPE = """\
  - {cidr: 127.0.0.0/8, tcp: 1-65535, udp: 1-65535}
"""
MAX_RATE_PPS = 100_000


@dataclass
class TrustKit:
    """The keys of a coordinator, a scope owner and an agent, in ``root``."""

    root: Path

    def __post_init__(self) -> None:
        self.coordinator = generate_key(self.root / "coordinator.pem")
        self.owner = generate_key(self.root / "owner.pem")
        self.agent_key_path = self.root / "state" / "agent-key.pem"
        self.agent = generate_key(self.agent_key_path)
        (self.root / "scope").mkdir()

    @property
    def scope_dir(self) -> Path:
        return self.root / "scope"

    def approve(
        self,
        subnet: str,
        destinations: str = LOOPBACK_SCOPE,
        max_rate_pps: int = MAX_RATE_PPS,
    ) -> Path:
        """Write and sign, with the owner's key, a scope for ``subnet``."""
        path = self.scope_dir / f"{subnet}.yaml"
        path.write_text(
            f"version: 1\nsubnets: [{subnet}]\nmax_rate_pps: {max_rate_pps}\n"
            f"destinations:\n{destinations}"
        )
        signature = self.owner.sign(
            envelope.signing_input(Context.SCOPE, path.read_bytes())
        )
        signature_path(path).write_text(
            signature_line(key_id(self.owner.public_key()), signature)
        )
        return path

    def config(self, **fields: Any) -> AgentConfig:
        """An agent configuration that trusts this kit's keys."""
        return AgentConfig(
            state_dir=self.root / "state",
            coordinator_key=public_path(self.root / "coordinator.pem"),
            scope=self.scope_dir,
            scope_key=public_path(self.root / "owner.pem"),
            agent_key=str(self.agent_key_path),
            **fields,
        )

    def sign(self, assignment: Assignment, key: Any = None) -> str:
        """The queue body of ``assignment`` signed by ``key`` (the coordinator)."""
        signer = key or self.coordinator
        payload = codec.encode(assignment)
        signature = signer.sign(envelope.signing_input(Context.ASSIGNMENT, payload))
        signed = Signed(payload, key_id(signer.public_key()), signature)
        return codec.to_text(msgspec.msgpack.encode(signed))

    def env(self) -> dict[str, str]:
        """The same trust, as the agent's environment variables."""
        return {
            "SEGSCAN_STATE_DIR": str(self.root / "state"),
            "SEGSCAN_COORDINATOR_KEY": str(public_path(self.root / "coordinator.pem")),
            "SEGSCAN_SCOPE": str(self.scope_dir),
            "SEGSCAN_SCOPE_KEY": str(public_path(self.root / "owner.pem")),
            "SEGSCAN_AGENT_KEY": str(self.agent_key_path),
        }


@pytest.fixture
def trust_kit(tmp_path: Path) -> TrustKit:
    return TrustKit(tmp_path / "trust")
