"""Which scan engine runs an assignment: the one asked for, or the best this host has.

``syn`` runs the raw-socket SYN engine (fast, sees TTLs and ICMP reasons) and
needs root or CAP_NET_RAW; ``connect`` needs no privilege.  ``auto`` takes the
SYN engine when the process may open raw sockets and falls back to connect
otherwise, saying so in the log; the result's ``engine`` names the one used.
"""

from __future__ import annotations

import structlog

from agent import syn
from agent.connect import ConnectEngine
from agent.engine import Engine
from agent.errors import ScanError
from protocol.messages import ScanKind

log = structlog.get_logger()

_NO_RAW = "the SYN engine needs root or CAP_NET_RAW"


def choose_engine(kind: ScanKind) -> Engine:
    """An engine for ``kind``; raise ``ScanError`` if this host cannot run it."""
    if kind is ScanKind.CONNECT:
        return ConnectEngine()
    if syn.raw_sockets_available():
        return syn.SynEngine()
    if kind is ScanKind.SYN:
        raise ScanError("syn", _NO_RAW)
    log.warning("engine_fallback", engine="connect", reason=_NO_RAW)

    return ConnectEngine()


def raw_sockets_available() -> bool:
    """Whether this process may open the raw sockets the SYN engine needs."""
    return syn.raw_sockets_available()
