"""Which scan engine runs an assignment: the one asked for, or the best this host has.

``auto`` prefers the SYN engine (raw sockets: fast, sees TTLs and forged RSTs)
and falls back to the connect engine, which needs no privilege.
"""

from __future__ import annotations

import socket

from agent.connect import ConnectEngine
from agent.engine import Engine
from agent.errors import ScanError
from protocol.messages import ScanKind

# TODO(#3): the SYN engine plugs in here: ScanKind.SYN gives agent.syn.SynEngine,
# auto prefers it when agent.syn.raw_sockets_available(), which then replaces
# the check below.


def choose_engine(kind: ScanKind) -> Engine:
    """An engine for ``kind``; raise ``ScanError`` if this host cannot run it."""
    if kind is ScanKind.SYN:
        raise ScanError("syn", "the SYN engine is not part of this build yet")

    return ConnectEngine()


def raw_sockets_available() -> bool:
    """Whether this process may open the raw sockets the SYN engine needs."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    except OSError:
        return False

    return True
