"""Which scan engine runs an assignment: the one asked for, or the best this host has.

``syn`` runs the raw-socket SYN engine (fast, sees TTLs and ICMP reasons) and
needs root or CAP_NET_RAW; ``connect`` needs no privilege.  ``auto`` takes the
SYN engine when the process may open raw sockets and falls back to connect
otherwise, or when a target is this host's own address, saying so in the log;
the result's ``engine`` names the one used.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

import structlog

from agent import syn
from agent.connect import ConnectEngine
from agent.engine import Engine
from agent.errors import ScanError
from protocol.messages import ScanKind

log = structlog.get_logger()

_NO_RAW = "the SYN engine needs root or CAP_NET_RAW"


def choose_engine(kind: ScanKind, targets: Sequence[IPv4Address] = ()) -> Engine:
    """An engine for ``kind`` and ``targets``; raise ``ScanError`` if this host
    cannot run the one asked for."""
    if kind is ScanKind.CONNECT:
        return ConnectEngine()
    if kind is ScanKind.SYN:
        if not syn.raw_sockets_available():
            raise ScanError("syn", _NO_RAW)
        return syn.SynEngine()
    if not syn.raw_sockets_available():
        reason = _NO_RAW
    elif own := syn.own_addresses(targets):
        reason = f"{own[0]} is this host's own address"
    else:
        return syn.SynEngine()
    log.warning("engine_fallback", engine="connect", reason=reason)

    return ConnectEngine()


def raw_sockets_available() -> bool:
    """Whether this process may open the raw sockets the SYN engine needs."""
    return syn.raw_sockets_available()
