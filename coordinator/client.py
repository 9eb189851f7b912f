"""The operator's side of the coordinator API, used by the CLI.

It finds the service by ``--url``, then ``SEGSCAN_COORDINATOR_URL``, then the
running local lab's state file, then the default local address; and the
operator token that state-changing requests need by ``--token``, then
``SEGSCAN_OPERATOR_TOKEN``, then the file ``SEGSCAN_OPERATOR_TOKEN_FILE`` names,
then the lab's ``operator-token`` file, then the one a local ``coordinator
serve`` made in its state directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import aiohttp

from coordinator import keys
from coordinator.auth import TOKEN_FILE
from coordinator.errors import CoordinatorError, NotFoundError, ServiceError, UsageError

DEFAULT_URL = "http://127.0.0.1:8470"
LAB_STATE = Path("/run/segscan-lab/state.json")
TIMEOUT_S = 30.0


def service_url(explicit: str | None = None) -> str:
    """Where the coordinator service is expected to listen."""
    if explicit:
        return explicit.rstrip("/")
    if env := os.environ.get("SEGSCAN_COORDINATOR_URL"):
        return env.rstrip("/")
    state = Path(os.environ.get("SEGSCAN_LAB_STATE", LAB_STATE))
    try:
        url = json.loads(state.read_text())["coordinator_url"]
        return str(url).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def operator_token(explicit: str | None = None) -> str | None:
    """The operator token to present, if one can be found."""
    if explicit:
        return explicit.strip()
    if env := os.environ.get("SEGSCAN_OPERATOR_TOKEN", "").strip():
        return env
    lab_state = Path(os.environ.get("SEGSCAN_LAB_STATE", LAB_STATE))
    named = os.environ.get("SEGSCAN_OPERATOR_TOKEN_FILE", "").strip()
    candidates = [lab_state.with_name(TOKEN_FILE), keys.state_dir() / TOKEN_FILE]
    for path in [Path(named)] * bool(named) + candidates:
        try:
            return path.read_text().strip() or None
        except OSError:
            continue

    return None


class Client:
    """JSON calls to the coordinator, with errors translated into ours."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str) -> Any:
        return await self._call("GET", path)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", path, body)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    method, self.url + path, json=body, headers=self._headers
                ) as reply,
            ):
                data = await reply.json(content_type=None)
                if reply.status >= 400:
                    raise _translate(reply.status, data, self.url)
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceError(
                self.url,
                f"cannot reach the coordinator ({exc.__class__.__name__}); start it "
                "with `coordinator serve` or `segscan-lab up`, or pass --url",
            ) from exc
        except ValueError as exc:
            raise ServiceError(self.url, "the coordinator answered non-JSON") from exc


def _translate(status: int, data: Any, url: str) -> CoordinatorError:
    message = data.get("error", f"HTTP {status}") if isinstance(data, dict) else ""
    if status == 404:
        return NotFoundError("", message)
    if status == 400:
        return UsageError("", message)
    if status == 401:
        return UsageError("--token", message)

    return ServiceError(url, message or f"HTTP {status}")
