"""The agent finds its subnet through a stand-in IMDSv2 on loopback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from agent.identity import AgentIdentityError, load_subnet_names, resolve_subnet

MAC = "0e:49:61:0f:c3:11"
SUBNET_ID = "subnet-0cde0000000000001"
NETWORK_MAP = f"""\
version: 1
subnets:
  {SUBNET_ID}: cde-a
  subnet-0f00000000000000a: corp-a
security_groups:            # the coordinator's part; the agent ignores it
  sg-0cde0000000000001: [cde-a]
"""


@dataclass
class Imds:
    """A metadata service that enforces the IMDSv2 session protocol."""

    url: str = ""
    subnet_id: str = SUBNET_ID
    tokens: set[str] = field(default_factory=set)
    ttl_headers: list[str] = field(default_factory=list)
    refuse_tokens: bool = False

    async def put_token(self, request: web.Request) -> web.Response:
        ttl = request.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        self.ttl_headers.append(ttl)
        if self.refuse_tokens:
            return web.Response(status=403)
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return web.Response(status=400)
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.Response(text=token)

    async def get(self, request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return web.Response(status=401)
        paths = {
            "mac": MAC,
            f"network/interfaces/macs/{MAC}/subnet-id": self.subnet_id,
        }
        body = paths.get(request.match_info["path"])
        return web.Response(text=body) if body else web.Response(status=404)


@pytest.fixture
async def imds() -> AsyncIterator[Imds]:
    state = Imds()
    app = web.Application()
    app.router.add_put("/latest/api/token", state.put_token)
    app.router.add_get("/latest/meta-data/{path:.+}", state.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
def network_map(tmp_path: Path) -> Path:
    path = tmp_path / "network.yaml"
    path.write_text(NETWORK_MAP, encoding="utf-8")
    return path


async def test_resolves_the_policy_subnet_through_imdsv2(
    imds: Imds, network_map: Path
) -> None:
    name = await resolve_subnet(network_map, imds_url=imds.url)

    assert name == "cde-a"
    assert len(imds.ttl_headers) == 1, "one session token serves both reads"


async def test_a_subnet_missing_from_the_map_is_named(
    imds: Imds, network_map: Path
) -> None:
    imds.subnet_id = "subnet-0badbadbadbadbad0"

    with pytest.raises(AgentIdentityError) as caught:
        await resolve_subnet(network_map, imds_url=imds.url)

    assert "subnet-0badbadbadbadbad0 is not in the network map" in str(caught.value)
    assert caught.value.subject == str(network_map)


async def test_a_refused_session_token_is_an_identity_error(
    imds: Imds, network_map: Path
) -> None:
    imds.refuse_tokens = True

    with pytest.raises(AgentIdentityError, match=r"token refused \(HTTP 403\)"):
        await resolve_subnet(network_map, imds_url=imds.url)


async def test_an_unreachable_metadata_service_is_an_identity_error(
    network_map: Path,
) -> None:
    """Port 9 on loopback has no listener: the connection is refused at once."""
    with pytest.raises(AgentIdentityError, match="metadata service unreachable"):
        await resolve_subnet(network_map, imds_url="http://127.0.0.1:9", timeout_s=1)


async def test_a_map_error_names_file_and_line(imds: Imds, tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text("version: 1\nsubnets:\n  subnet-0cde0000000000001: [cde-a]\n")

    with pytest.raises(AgentIdentityError) as caught:
        await resolve_subnet(path, imds_url=imds.url)

    assert caught.value.subject == f"{path}:3"
    assert not imds.ttl_headers, "a broken map is reported before IMDS is asked"


def test_ids_that_are_not_subnet_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text("version: 1\nsubnets:\n  sg-0cde0000000000001: cde-a\n")

    with pytest.raises(AgentIdentityError, match="not an AWS subnet id"):
        load_subnet_names(path)


def test_the_founding_network_map_names_every_subnet() -> None:
    founding = Path(__file__).parents[2] / "deploy/aws/founding/network.yaml"

    names = load_subnet_names(founding)

    assert len(names) == 12
    assert sorted(set(names.values())) == sorted(names.values())
