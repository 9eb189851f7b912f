"""A lab workload: accepts and closes TCP connections, answers every UDP datagram.

It runs inside a host's namespace (``python -m deploy.lab.workload --tcp 443,8000-8040
--udp 53``) so that a scan sees the host's ports open: the kernel's SYN-ACK for
TCP, a reply datagram for UDP.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import structlog

from deploy.lab.logconfig import configure_logging
from protocol.ports import PortRanges, count, expand, format_ports, parse_ports

REPLY = b"segscan-lab\n"
ANY_ADDRESS = "0.0.0.0"

log = structlog.get_logger(__name__)


class _Answer(asyncio.DatagramProtocol):
    """Replies to every datagram, whatever it holds."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(REPLY, addr)


@dataclass(frozen=True)
class Listeners:
    """The sockets of one workload."""

    tcp: tuple[asyncio.Server, ...]
    udp: tuple[asyncio.DatagramTransport, ...]

    async def close(self) -> None:
        for transport in self.udp:
            transport.close()
        for server in self.tcp:
            server.close()
            await server.wait_closed()


async def serve(host: str, tcp: PortRanges, udp: PortRanges) -> Listeners:
    """Listen on every port of ``tcp`` and ``udp`` at ``host``."""
    loop = asyncio.get_running_loop()
    servers = [
        await asyncio.start_server(_accept_and_close, host, port, reuse_address=True)
        for port in expand(tcp)
    ]
    transports = [
        (await loop.create_datagram_endpoint(_Answer, local_addr=(host, port)))[0]
        for port in expand(udp)
    ]

    return Listeners(tuple(servers), tuple(transports))


async def _accept_and_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.close()


async def _run(tcp: PortRanges, udp: PortRanges) -> None:
    await serve(ANY_ADDRESS, tcp, udp)
    log.info("workload_listening", tcp=format_ports(tcp), udp=format_ports(udp))
    # Serve until the supervisor's SIGTERM ends the process.
    await asyncio.Event().wait()


def _ports(text: str) -> PortRanges:
    try:
        return parse_ports(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _make_room(sockets: int) -> None:
    """One socket per port: lift the descriptor limit if the ports need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + 64
    if soft != resource.RLIM_INFINITY and wanted > soft:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the ports given on the command line until killed."""
    parser = argparse.ArgumentParser(prog="python -m deploy.lab.workload")
    parser.add_argument("--tcp", type=_ports, default=())
    parser.add_argument("--udp", type=_ports, default=())
    args = parser.parse_args(argv)
    configure_logging()
    _make_room(count(args.tcp) + count(args.udp))
    asyncio.run(_run(args.tcp, args.udp))

    return 0


if __name__ == "__main__":
    sys.exit(main())
