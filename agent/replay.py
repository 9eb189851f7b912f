"""Replay protection: the assignment ids this agent accepted, kept until expiry.

SQS delivers at least once, so the same *message* may come back (a crash
mid-scan, a lost delete) and is run again.  The coordinator never re-sends an
assignment (DESIGN.md, "Commands": a rescan is a fresh one), so the same
*assignment id* arriving in a different message is a replay and is refused.
The ids live in ``<state dir>/replay.json`` and survive a restart; each is
dropped once its assignment expired (plus the clock skew allowance), after
which the expiry check refuses it anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from agent.errors import ConfigError

REPLAY_FILE = "replay.json"


class _Seen(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message_id: str
    expires_at: float


class ReplayCache:
    """Accepted assignment ids with the message each came in and its expiry."""

    def __init__(
        self, path: Path, keep_after_expiry_s: float, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self._keep_s = keep_after_expiry_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    @classmethod
    def load(
        cls, state_dir: Path, keep_after_expiry_s: float, clock: Callable[[], float]
    ) -> ReplayCache:
        """The cache kept in ``state_dir``; raise ``ConfigError`` if unreadable.

        An unreadable file stops the agent instead of forgetting: forgetting
        would let every unexpired assignment be replayed once more.
        """
        cache = cls(state_dir / REPLAY_FILE, keep_after_expiry_s, clock)
        try:
            data = cache.path.read_bytes()
        except FileNotFoundError:
            return cache
        except OSError as exc:
            raise ConfigError("SEGSCAN_STATE_DIR", f"{cache.path}: {exc}") from exc
        try:
            cache._seen = msgspec.json.decode(data, type=dict[str, _Seen])
        except msgspec.DecodeError as exc:
            raise ConfigError(
                "SEGSCAN_STATE_DIR",
                f"{cache.path} is damaged ({exc}); remove it only if no "
                "unexpired assignment may have been run",
            ) from exc
        cache._prune()

        return cache

    def replayed(self, assignment_id: str, message_id: str) -> bool:
        """Whether ``assignment_id`` was accepted before in another message."""
        seen = self._seen.get(assignment_id)

        return seen is not None and seen.message_id != message_id

    def remember(self, assignment_id: str, message_id: str, expires_at: float) -> None:
        """Record an accepted assignment, on disk before it is run."""
        self._seen[assignment_id] = _Seen(message_id, expires_at)
        self._prune()
        self._save()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self) -> None:
        horizon = self._clock() - self._keep_s
        self._seen = {k: v for k, v in self._seen.items() if v.expires_at >= horizon}

    def _save(self) -> None:
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as file:
                file.write(msgspec.json.encode(self._seen))
                file.flush()
                os.fsync(file.fileno())
            partial.replace(self.path)
        except OSError as exc:
            raise ConfigError(
                "SEGSCAN_STATE_DIR", f"cannot record accepted assignments: {exc}"
            ) from exc
