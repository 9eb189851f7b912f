"""A workload accepts and closes TCP connections and answers every UDP datagram."""

from __future__ import annotations

import asyncio
import socket

from deploy.lab.workload import REPLY, serve
from protocol.ports import compress


def _free_ports(count: int, kind: socket.SocketKind) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, kind) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def test_tcp_ports_accept_then_close() -> None:
    ports = _free_ports(3, socket.SOCK_STREAM)
    listeners = await serve("127.0.0.1", compress(ports), ())
    try:
        for port in ports:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await asyncio.wait_for(reader.read(), 2)
            writer.close()
            await writer.wait_closed()

            assert data == b""
    finally:
        await listeners.close()


async def test_udp_ports_answer_every_datagram() -> None:
    ports = _free_ports(2, socket.SOCK_DGRAM)
    listeners = await serve("127.0.0.1", (), compress(ports))
    loop = asyncio.get_running_loop()
    try:
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, ("127.0.0.1", port))
                replies = []
                for payload in (b"", b"\x00dns?"):
                    await loop.sock_sendall(sock, payload)
                    replies.append(await asyncio.wait_for(loop.sock_recv(sock, 64), 2))

                assert replies == [REPLY, REPLY]
    finally:
        await listeners.close()
