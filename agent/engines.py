"""Which scan engine runs an assignment: the one asked for, or the best this host has.

``syn`` runs the raw-socket SYN engine (fast, sees TTLs and ICMP reasons) and
needs root or CAP_NET_RAW; ``connect`` needs no privilege.  ``auto`` stays on
the connect engine for now: the SYN engine has not yet run the founding lab
end to end.
"""

from __future__ import annotations

from agent import syn
from agent.connect import ConnectEngine
from agent.engine import Engine
from agent.errors import ScanError
from protocol.messages import ScanKind

# TODO(#3): let auto prefer the SYN engine once the founding demo's full-port
# run on it is measured within its time budget in the lab.


def choose_engine(kind: ScanKind) -> Engine:
    """An engine for ``kind``; raise ``ScanError`` if this host cannot run it."""
    if kind is ScanKind.SYN:
        if not syn.raw_sockets_available():
            raise ScanError("syn", "the SYN engine needs root or CAP_NET_RAW")
        return syn.SynEngine()

    return ConnectEngine()


def raw_sockets_available() -> bool:
    """Whether this process may open the raw sockets the SYN engine needs."""
    return syn.raw_sockets_available()
