"""Sockets for the SYN engine: a sender that writes a batch of prepared frames
with one ``sendmmsg(2)``, a filtered receiver, the kernel's drop counters for
both, and the source port a scan holds.

Measured on the project's 2-core VM between two namespaces over veth: one
``send()`` per frame tops out near 250 thousand frames per second, the syscall
costing more than the frame; ``sendmmsg`` over an ``AF_PACKET`` socket with
``PACKET_QDISC_BYPASS`` passes 400 thousand, and a ``PACKET_TX_RING`` did no
better (veth copies the ring's pages again).  Frames bypass the sending host's
qdisc and netfilter, as every raw scanner's do.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent import bpf
from agent.errors import ScanError

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_QDISC_BYPASS = 20
SO_RCVBUFFORCE = 33  # not in the socket module; asm-generic/socket.h
ETH_P_IP = 0x0800
RECEIVE_BUFFER_BYTES = 64 << 20  # a few hundred thousand replies of slack

_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_ENOBUFS_RETRIES = 200
_ENOBUFS_PAUSE_S = 0.001


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def grow_receive_buffer(sock: socket.socket) -> None:
    """Ask for a large receive buffer, as far as this process's privilege goes.

    SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN; an agent
    with CAP_NET_RAW alone gets SO_RCVBUF, capped by rmem_max.  Either way the
    kernel's drop counter tells whether the buffer was too small.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)


def _libc_sendmmsg() -> ctypes._NamedFuncPointer | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).sendmmsg
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    func.restype = ctypes.c_int

    return func


_sendmmsg = _libc_sendmmsg()


def raw_sockets_available() -> bool:
    """Whether this process may open packet sockets and batch-send on them."""
    if _sendmmsg is None:
        return False
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except OSError:
        return False

    return True


def open_sender(interface: str) -> socket.socket:
    """A socket that sends whole Ethernet frames out of ``interface``."""
    kind = _link_type(interface)
    if kind not in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK):
        raise ScanError("syn", f"{interface} is not Ethernet (link type {kind})")
    sock = _packet_socket(socket.SOCK_RAW, interface)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.bind((interface, 0))
    except OSError as exc:
        sock.close()
        raise ScanError("syn", f"cannot send on {interface}: {exc}") from exc

    return sock


def open_receiver(interface: str, program: bytes) -> socket.socket:
    """A socket reading the IPv4 packets of ``interface`` that pass ``program``.

    The filter is attached before the socket is bound to a protocol, so no
    unfiltered packet is ever queued on it.
    """
    sock = _packet_socket(socket.SOCK_DGRAM, interface)
    try:
        bpf.attach(sock, program)
        grow_receive_buffer(sock)
        sock.bind((interface, ETH_P_IP))
        sock.settimeout(0.05)
        receive_drops(sock)  # start the counters from zero
    except OSError as exc:
        sock.close()
        raise ScanError("syn", f"cannot receive on {interface}: {exc}") from exc

    return sock


def _packet_socket(kind: int, interface: str) -> socket.socket:
    try:
        return socket.socket(socket.AF_PACKET, kind, 0)
    except OSError as exc:
        raise ScanError("syn", f"no packet socket for {interface}: {exc}") from exc


def _link_type(interface: str) -> int:
    try:
        return int((Path("/sys/class/net") / interface / "type").read_text())
    except (OSError, ValueError):
        return -1


def receive_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped for ``sock`` since the last call."""
    stats = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    _packets, drops = struct.unpack("=II", stats)

    return int(drops)


def tx_dropped(interface: str) -> int:
    """The interface's own count of frames it could not transmit."""
    path = Path("/sys/class/net") / interface / "statistics" / "tx_dropped"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def interface_mac(interface: str) -> bytes:
    """The interface's hardware address (zeros for loopback)."""
    text = (Path("/sys/class/net") / interface / "address").read_text().strip()

    return bytes.fromhex(text.replace(":", "")) or bytes(6)


class BatchSender:
    """Fixed-size frame slots in one buffer, sent many at a time.

    ``buffer`` holds ``slots`` slots of ``slot_bytes``; slot ``i``'s frame starts
    at ``frame_offset`` and is ``frame_bytes`` long unless ``set_length`` says
    otherwise.  ``select`` sends a chosen subset of slots in the next calls.
    """

    def __init__(
        self,
        sock: socket.socket,
        slots: int,
        slot_bytes: int,
        frame_offset: int = 0,
        frame_bytes: int = 0,
    ) -> None:
        self.sock = sock
        self.slots = slots
        self.buffer = bytearray(slots * slot_bytes)
        self.errors = 0  # sends the kernel refused for lack of buffers
        self._slot_bytes = slot_bytes
        self._frames = (ctypes.c_char * len(self.buffer)).from_buffer(self.buffer)
        self._base = ctypes.addressof(self._frames) + frame_offset
        self._iovecs = (_IoVec * slots)()
        self._messages = (_MMsgHdr * slots)()
        for i in range(slots):
            self._iovecs[i].base = self._base + i * slot_bytes
            self._iovecs[i].length = frame_bytes
            self._messages[i].hdr.iov = ctypes.addressof(self._iovecs[i])
            self._messages[i].hdr.iovlen = 1
        self._identity = bytes(self._iovecs)
        self._selected = False

    def set_length(self, slot: int, frame_bytes: int) -> None:
        """The length of the frame in ``slot``."""
        self._iovecs[slot].length = frame_bytes

    def select(self, slots: Sequence[int]) -> None:
        """Send only these slots, in this order, as messages 0..len-1."""
        for message, slot in enumerate(slots):
            self._iovecs[message].base = self._base + slot * self._slot_bytes
        self._selected = True

    def reset(self) -> None:
        """Undo ``select``: message ``i`` sends slot ``i`` again."""
        if self._selected:
            ctypes.memmove(self._iovecs, self._identity, len(self._identity))
            self._selected = False

    def send(self, first: int, count: int) -> int:
        """Send messages ``first`` .. ``first + count - 1``; return how many went.

        A kernel out of buffers is waited out briefly; any other refusal is a
        ``ScanError``.
        """
        assert _sendmmsg is not None
        fd = self.sock.fileno()
        size = ctypes.sizeof(_MMsgHdr)
        done = 0
        retries = 0
        while done < count:
            sent = _sendmmsg(
                fd, ctypes.byref(self._messages, (first + done) * size), count - done, 0
            )
            if sent > 0:
                done += sent
                continue
            code = ctypes.get_errno()
            if code not in (errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
                raise ScanError("syn", f"sendmmsg failed: {errno.errorcode.get(code)}")
            retries += 1
            self.errors += 1
            if retries > _ENOBUFS_RETRIES:
                break
            time.sleep(_ENOBUFS_PAUSE_S)

        return done


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A port number that is ours for both TCP and UDP while the scan runs."""
    for _ in range(20):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("0.0.0.0", 0))
            port: int = tcp.getsockname()[1]
            udp_sock.bind(("0.0.0.0", port))
        except OSError:
            tcp.close()
            udp_sock.close()
            continue
        with tcp, udp_sock:
            yield port
        return
    raise ScanError("syn", "no source port is free for both TCP and UDP")
