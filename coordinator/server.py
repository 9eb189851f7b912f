"""Running the coordinator service: open the store, listen, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import structlog
from aiohttp import web

from coordinator import accounting
from coordinator.auth import (
    agent_key_aliases,
    agent_keys_dir,
    load_agent_keys,
    load_kms_agent_keys,
    operator_token,
    refresh_agent_keys,
)
from coordinator.dispatch import Dispatcher, QueueConfig
from coordinator.errors import UsageError
from coordinator.runs import RunManager
from coordinator.service import make_app
from coordinator.signer import open_coordinator_signer
from coordinator.store import DEFAULT_DB_URL, Store
from coordinator.vault import Vault

log = structlog.get_logger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair; raise ``UsageError`` if it is not one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(listen, "--listen takes HOST:PORT, e.g. 127.0.0.1:8470")

    return host, int(port)


async def serve(listen: str, db_url: str | None, evidence: str | None = None) -> None:
    """Serve until SIGTERM or SIGINT; ``evidence`` is where bundles go."""
    host, port = parse_listen(listen)
    vault = Vault.from_env(evidence)
    # On AWS the agents' keys live in KMS; in the lab, in a directory.
    aliases = agent_key_aliases()
    if aliases:
        agent_keys = await load_kms_agent_keys(aliases)
    else:
        agent_keys = load_agent_keys(agent_keys_dir())
    token = operator_token()
    exits = contextlib.AsyncExitStack()
    signer = await exits.enter_async_context(open_coordinator_signer())
    url = db_url or os.environ.get("SEGSCAN_DB_URL") or DEFAULT_DB_URL
    store = await Store.open(url)
    manager = RunManager(store, Dispatcher(QueueConfig.from_env(), signer), vault)
    app = make_app(manager, agent_keys, token)
    if aliases:
        refresh_agent_keys(app, agent_keys, aliases)
    accounting.keep_moving(app, store, manager.dispatcher)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        await exits.aclose()
        raise UsageError(listen, f"cannot listen: {exc.strerror}") from exc
    log.info(
        "coordinator_listening",
        listen=listen,
        db=url.split("://")[0],
        signing_key=signer.key_id,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("coordinator_stopping")
    await runner.cleanup()
    await store.close()
    await exits.aclose()
