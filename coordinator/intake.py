"""What agents post: results, heartbeats, refusals and witness sightings, each a
signed envelope.

Every body passes the same checks before anything in it is believed: a size
limit per route, then a strict envelope, a key the coordinator knows, a
signature that holds, a strict message, and last the key's subnet against the
subnet the message speaks for.  A result is accepted only from the agent of
the subnet its assignment was addressed to, and stored with the key that
signed it.  Each refusal is logged as a security event; the service answers
with one JSON line and goes on serving.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from coordinator import refusals, witnessing
from coordinator.auth import AgentKeys
from coordinator.store import Intake, Store
from protocol import codec, envelope
from protocol.codec import M
from protocol.envelope import Context, Signed, UnknownKeyError
from protocol.errors import ProtocolError
from protocol.messages import Heartbeat, Refusal, Result, Sighting
from protocol.signing import SignatureError

log = structlog.get_logger(__name__)

ENVELOPE_OVERHEAD_BYTES = 1024
MAX_RESULT_BYTES = codec.MAX_MESSAGE_BYTES + ENVELOPE_OVERHEAD_BYTES
MAX_NOTICE_BYTES = 64 * 1024  # heartbeats and refusals are a few hundred bytes
READ_CHUNK_BYTES = 64 * 1024

AGENT_KEYS = web.AppKey("agent_keys", AgentKeys)
INTAKE_STORE = web.AppKey("intake_store", Store)

_INTAKE_STATUS = {
    Intake.STORED: 200,
    Intake.DUPLICATE: 200,
    Intake.UNKNOWN: 404,
    Intake.WRONG_SUBNET: 409,
}
# Made once: every result post is answered with one of these.
_INTAKE_BODY = {i: json.dumps({"status": str(i)}).encode() for i in Intake}


class Rejected(Exception):
    """A post refused with ``status``, saying ``error``."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass(frozen=True)
class Post:
    """A verified post: its envelope, the signing key and that key's subnet."""

    body: bytes
    signed: Signed
    key_id: str
    subnet: str


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answering_rejected(handler: Handler) -> Handler:
    """``handler``, with the posts it rejects answered and logged as such."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Rejected as exc:
            return _rejected(request, exc)

    return handle


def add_routes(app: web.Application, store: Store, agent_keys: AgentKeys) -> None:
    """Serve the agent-facing routes of ``app``."""
    app[AGENT_KEYS] = agent_keys
    app[INTAKE_STORE] = store
    app.router.add_post("/v1/results", post_result)
    app.router.add_post("/v1/heartbeats", post_heartbeat)
    app.router.add_post("/v1/refusals", post_refusal)
    app.router.add_post("/v1/sightings", post_sighting)


@_answering_rejected
async def post_result(request: web.Request) -> web.StreamResponse:
    post, result = await _opened(
        request, Context.RESULT, Result, MAX_RESULT_BYTES, lambda r: r.src
    )
    intake = await request.app[INTAKE_STORE].add_result(
        result, post.signed.payload, post.key_id, post.signed.signature
    )
    log.info(
        "result_received",
        run=result.run_id,
        pair=f"{result.src} -> {result.dst}",
        assignment=result.assignment_id,
        agent=result.agent,
        key_id=post.key_id,
        findings=len(result.findings),
        error=result.error,
        intake=str(intake),
    )

    return web.Response(
        body=_INTAKE_BODY[intake],
        status=_INTAKE_STATUS[intake],
        content_type="application/json",
        charset="utf-8",
    )


@_answering_rejected
async def post_heartbeat(request: web.Request) -> web.StreamResponse:
    _, beat = await _opened(
        request, Context.HEARTBEAT, Heartbeat, MAX_NOTICE_BYTES, _subnet
    )
    await request.app[INTAKE_STORE].touch_agent(
        beat.agent, beat.subnet, time.time(), beat.assignment_id
    )

    return web.Response(status=204)


@_answering_rejected
async def post_refusal(request: web.Request) -> web.StreamResponse:
    post, refusal = await _opened(
        request, Context.REFUSAL, Refusal, MAX_NOTICE_BYTES, _subnet
    )
    store = request.app[INTAKE_STORE]
    row = await refusals.record(store, refusal, post.key_id, post.body, time.time())

    return web.json_response({"status": "recorded", "issued": row.issued})


@_answering_rejected
async def post_sighting(request: web.Request) -> web.StreamResponse:
    # Probes arrive in random port order, so a window's ranges fragment: as
    # large as a result, at worst.
    post, sighting = await _opened(
        request, Context.SIGHTING, Sighting, MAX_RESULT_BYTES, _subnet
    )
    await witnessing.record(request.app[INTAKE_STORE], sighting, post.key_id, post.body)

    return web.Response(status=204)


async def _opened(
    request: web.Request,
    context: Context,
    kind: type[M],
    max_bytes: int,
    speaks_for: Callable[[M], str],
) -> tuple[Post, M]:
    """The verified post and its message, which must speak for the subnet of
    the key that signed it."""
    post = await _verified(request, context, max_bytes)
    message = _decode(post, kind)
    _speaks_for(post, speaks_for(message))

    return post, message


def _subnet(message: Heartbeat | Refusal | Sighting) -> str:
    return message.subnet


async def _verified(request: web.Request, context: Context, max_bytes: int) -> Post:
    """The envelope of the request, signed for ``context`` by a known agent key."""
    body = await _body(request, max_bytes)
    try:
        signed = envelope.open_envelope(body, max_bytes)
    except ProtocolError as exc:
        raise Rejected(400, str(exc)) from exc
    agent_keys = request.app[AGENT_KEYS]
    try:
        envelope.check(signed, context, agent_keys)
    except UnknownKeyError as exc:
        raise Rejected(403, f"unknown agent key: {exc}") from exc
    except SignatureError as exc:
        raise Rejected(403, str(exc)) from exc

    return Post(body, signed, signed.key, agent_keys.subnet(signed.key))


async def _body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` before it is all read."""
    too_large = Rejected(413, f"body over {max_bytes} bytes")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise too_large

    return bytes(body)


def _decode(post: Post, kind: type[M]) -> M:
    try:
        return codec.decode(post.signed.payload, kind)
    except ProtocolError as exc:
        raise Rejected(400, str(exc)) from exc


def _speaks_for(post: Post, subnet: str) -> None:
    """Refuse a message about ``subnet`` signed by another subnet's agent."""
    if post.subnet != subnet:
        raise Rejected(
            403, f"signed by the agent of {post.subnet!r}, but speaks for {subnet!r}"
        )


def _rejected(request: web.Request, exc: Rejected) -> web.Response:
    log.warning(
        "agent_post_rejected",
        security_event=True,
        path=request.path,
        status=exc.status,
        error=exc.error,
        peer=request.remote,
    )

    return web.json_response({"error": exc.error}, status=exc.status)
