"""Posts results, heartbeats, refusals and sightings to the coordinator, as signed
msgpack.

Every post is a signed envelope (protocol/envelope.py) made with the agent's
own key, which the coordinator knows as this subnet's.  aiohttp errors and
unexpected answers become ``CoordinatorError`` here, naming the URL and what
the coordinator said.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import aiohttp

from agent.errors import CoordinatorError
from protocol import codec, envelope
from protocol.envelope import Context
from protocol.messages import Heartbeat, Refusal, Result, Sighting
from protocol.signer import Signer
from protocol.signing import SignatureError

MSGPACK = "application/msgpack"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Health:
    """What ``GET /healthz`` said, and the coordinator's clock when it said it."""

    status: str
    server_time: float | None  # from the HTTP Date header, to the second


class Sender:
    """An HTTP client of one coordinator; use as ``async with Sender(url)``."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        signer: Signer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signer = signer  # needed for posts; ``health`` works without
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post_result(self, result: Result) -> str:
        """Deliver ``result``; return the coordinator's "stored" or "duplicate"."""
        body = await self._sealed(codec.encode(result), Context.RESULT)
        reply = await self._request("POST", "/v1/results", body, 200)

        return str(reply.get("status", "stored"))

    async def post_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Tell the coordinator this agent is alive and what it is doing."""
        body = await self._sealed(codec.encode(heartbeat), Context.HEARTBEAT)
        await self._request("POST", "/v1/heartbeats", body, 204)

    async def post_refusal(self, refusal: Refusal) -> None:
        """Tell the coordinator a queue message was refused, and why."""
        body = await self._sealed(codec.encode(refusal), Context.REFUSAL)
        await self._request("POST", "/v1/refusals", body, 200)

    async def post_sighting(self, sighting: Sighting) -> None:
        """Tell the coordinator what this agent's witness saw in one window."""
        body = await self._sealed(codec.encode(sighting), Context.SIGHTING)
        await self._request("POST", "/v1/sightings", body, 204)

    async def health(self) -> Health:
        """Ask ``/healthz`` whether the coordinator is up."""
        url = f"{self.base_url}/healthz"
        async with _translated(url), self._open().get(url) as response:
            body = await _json_body(response, url, 200)
            date = response.headers.get("Date")

        return Health(str(body.get("status", "")), _timestamp(date))

    async def _sealed(self, payload: bytes, context: Context) -> bytes:
        if self.signer is None:
            raise CoordinatorError(self.base_url, "no agent key to sign posts with")
        try:
            return await envelope.seal(payload, context, self.signer)
        except SignatureError as exc:
            raise CoordinatorError(self.base_url, f"cannot sign: {exc}") from exc

    async def _request(
        self, method: str, path: str, body: bytes, expected: int
    ) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": MSGPACK}
        async with (
            _translated(url),
            self._open().request(method, url, data=body, headers=headers) as response,
        ):
            return await _json_body(response, url, expected)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise CoordinatorError(self.base_url, "used outside 'async with'")
        return self._session


async def _json_body(
    response: aiohttp.ClientResponse, url: str, expected: int
) -> dict[str, Any]:
    """The JSON body of an answer with status ``expected``; else an error."""
    is_json = response.content_type == "application/json"
    body = await response.json() if is_json else {}
    if not isinstance(body, dict):
        body = {}
    if response.status != expected:
        detail = f": {body['error']}" if "error" in body else ""
        raise CoordinatorError(
            url,
            f"answered {response.status} {response.reason}{detail}",
            status=response.status,
        )

    return body


def _timestamp(date: str | None) -> float | None:
    """Seconds since the epoch of an HTTP Date header, if it parses."""
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        return None


@contextlib.asynccontextmanager
async def _translated(url: str) -> AsyncIterator[None]:
    """Turn what aiohttp raises into a ``CoordinatorError`` about ``url``."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        message = str(exc) or type(exc).__name__
        raise CoordinatorError(url, f"request failed: {message}") from exc
