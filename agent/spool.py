"""The spool: finished results on the agent's disk until the coordinator has them.

A result is written here before it is first posted, so neither a coordinator
that is down nor an agent that is killed loses it; an agent restarted from its
image finds it again under ``SEGSCAN_STATE_DIR``.  Layout::

    spool/pending/<assignment>.msgpack   a result not yet acknowledged
    spool/acked/<assignment>             acknowledged: "<expires_at>" inside,
                                         so a redelivered message is deleted
                                         instead of scanned again
    spool/refused/<assignment>.msgpack   refused for good (unknown assignment,
                                         wrong subnet): kept for a person

Every file is written to a temporary name, flushed to disk and renamed, so a
crash leaves either the old state or the new one, never half a result.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import structlog

from protocol import codec
from protocol.errors import ProtocolError
from protocol.messages import Result

log = structlog.get_logger(__name__)

# Assignment ids are the coordinator's uuid4 hex; anything else never
# becomes a file name.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ACK_KEEP_S = 600.0  # markers outlive their assignment by the clock skew allowance


class Spool:
    """Results waiting for the coordinator, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.pending_dir = directory / "pending"
        self.acked_dir = directory / "acked"
        self.refused_dir = directory / "refused"

    def put(self, result: Result) -> None:
        """Keep ``result`` until it is acknowledged."""
        path = self._pending(result.assignment_id)
        _write(path, codec.encode(result))

    def pending(self) -> list[str]:
        """The assignment ids of every result waiting, oldest first."""
        if not self.pending_dir.is_dir():
            return []
        files = sorted(self.pending_dir.glob("*.msgpack"), key=_mtime)

        return [path.stem for path in files]

    def load(self, assignment_id: str) -> Result | None:
        """The waiting result of ``assignment_id``, if there is a readable one."""
        path = self._pending(assignment_id)
        try:
            return codec.decode(path.read_bytes(), Result)
        except FileNotFoundError:
            return None
        except (OSError, ProtocolError) as exc:
            # A file the agent cannot read back would block the spool forever.
            log.error("spool_unreadable", path=str(path), error=str(exc))
            self._move(path, self.refused_dir / path.name)
            return None

    def ack(self, assignment_id: str, expires_at: float) -> None:
        """The coordinator has the result: remember that, forget the result."""
        _write(self._acked(assignment_id), f"{expires_at}".encode())
        with contextlib.suppress(FileNotFoundError):
            self._pending(assignment_id).unlink()

    def acked(self, assignment_id: str) -> bool:
        """Whether the coordinator already acknowledged this assignment's result."""
        return self._acked(assignment_id).exists()

    def refuse(self, assignment_id: str) -> None:
        """The coordinator will never take this result: set it aside."""
        path = self._pending(assignment_id)
        self._move(path, self.refused_dir / path.name)

    def prune(self, now: float) -> int:
        """Forget acknowledgements of assignments long expired; how many."""
        if not self.acked_dir.is_dir():
            return 0
        pruned = 0
        for marker in self.acked_dir.iterdir():
            try:
                expired = float(marker.read_text()) + ACK_KEEP_S < now
            except (OSError, ValueError):
                expired = True
            if expired:
                marker.unlink(missing_ok=True)
                pruned += 1

        return pruned

    def _pending(self, assignment_id: str) -> Path:
        return self.pending_dir / f"{_safe(assignment_id)}.msgpack"

    def _acked(self, assignment_id: str) -> Path:
        return self.acked_dir / _safe(assignment_id)

    @staticmethod
    def _move(path: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.replace(target)


def _safe(assignment_id: str) -> str:
    if not _SAFE_ID.fullmatch(assignment_id):
        raise ValueError(f"{assignment_id!r} is not an assignment id")

    return assignment_id


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
