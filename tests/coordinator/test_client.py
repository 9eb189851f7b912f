"""The operator's client: where it finds the service, and errors translated."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from coordinator.client import DEFAULT_URL, Client, service_url
from coordinator.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_USAGE,
    NotFoundError,
    ServiceError,
    UsageError,
)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No URL in the environment; the lab state file is this test's own."""
    state = tmp_path / "state.json"
    monkeypatch.delenv("SEGSCAN_COORDINATOR_URL", raising=False)
    monkeypatch.setenv("SEGSCAN_LAB_STATE", str(state))

    return state


ANSWERS: dict[str, tuple[int, Any]] = {
    "/ok": (200, {"status": "ok"}),
    "/missing": (404, {"error": "nope: no such run"}),
    "/bad": (400, {"error": "p.yaml:3: bad CIDR"}),
    "/conflict": (409, {"status": "wrong-subnet"}),
    "/broken": (500, "Internal Server Error"),
    "/text": (200, "hello"),
}


async def _answer(request: web.Request) -> web.Response:
    status, body = ANSWERS[request.path]
    if isinstance(body, str):
        return web.Response(status=status, text=body)

    return web.json_response(body, status=status)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """A stand-in service that answers each path with a fixed status and body."""
    app = web.Application()
    for path in ANSWERS:
        app.router.add_route("*", path, _answer)
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/")


def test_an_explicit_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSCAN_COORDINATOR_URL", "http://env:1")

    assert service_url("http://flag:2/") == "http://flag:2"


def test_the_environment_comes_before_the_lab_state(
    no_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_env.write_text(json.dumps({"coordinator_url": "http://lab:3"}))
    monkeypatch.setenv("SEGSCAN_COORDINATOR_URL", "http://env:1/")

    assert service_url() == "http://env:1"


def test_the_lab_state_file_comes_before_the_default(no_env: Path) -> None:
    no_env.write_text(json.dumps({"coordinator_url": "http://10.99.0.1:8470/"}))

    assert service_url() == "http://10.99.0.1:8470"


@pytest.mark.parametrize("state", [None, "not json", "[]", '{"other": 1}'])
def test_without_a_usable_state_file_the_default_is_used(
    no_env: Path, state: str | None
) -> None:
    if state is not None:
        no_env.write_text(state)

    assert service_url() == DEFAULT_URL


async def test_a_json_answer_is_returned(url: str) -> None:
    assert await Client(url).get("/ok") == {"status": "ok"}
    assert await Client(url).post("/ok", {"x": 1}) == {"status": "ok"}


async def test_a_404_is_not_found_with_the_services_message(url: str) -> None:
    with pytest.raises(NotFoundError) as info:
        await Client(url).get("/missing")

    assert str(info.value) == "nope: no such run"
    assert info.value.exit_code == EXIT_USAGE


async def test_a_400_is_a_usage_error_with_the_services_message(url: str) -> None:
    with pytest.raises(UsageError, match=r"^p\.yaml:3: bad CIDR$"):
        await Client(url).post("/bad", {})


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/conflict", "HTTP 409"),
        ("/broken", "non-JSON"),
        ("/text", "non-JSON"),
    ],
)
async def test_other_failures_are_service_errors(
    url: str, path: str, says: str
) -> None:
    with pytest.raises(ServiceError, match=says) as info:
        await Client(url).get(path)

    assert info.value.subject == url
    assert info.value.exit_code == EXIT_INCONCLUSIVE


async def test_an_unreachable_service_is_a_service_error_saying_how_to_start_it(
    unused_tcp_port: int,
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"

    with pytest.raises(ServiceError) as info:
        await Client(url).get("/healthz")

    assert info.value.subject == url
    assert "cannot reach the coordinator (ClientConnectorError)" in info.value.message
    assert "coordinator serve" in info.value.message
