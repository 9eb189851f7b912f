"""A token bucket that holds the send rate: how long to wait before a batch.

Design note: tokens accrue at ``rate_pps`` up to ``burst``; taking more than
there are leaves a debt, and the caller sleeps until it is paid.  Keeping the
debt (rather than refusing) makes the long-run rate exact even though a
thread's sleep overshoots by tens of microseconds: the next batch simply finds
more tokens, up to ``burst``.  The burst is worth a few milliseconds of
sending, enough to absorb a sleep that overshoots on a busy host, while the
sender takes only a few dozen probes at a time, so the wire sees short bursts.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Rate ``rate_pps`` with bursts of at most ``burst`` probes."""

    def __init__(
        self,
        rate_pps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_pps <= 0 or burst < 1:
            raise ValueError(f"bad rate {rate_pps} pps or burst {burst}")
        self.rate_pps = rate_pps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self, count: int) -> float:
        """Reserve ``count`` probes; return the seconds to wait before sending."""
        now = self._clock()
        self._tokens = min(
            float(self.burst), self._tokens + (now - self._last) * self.rate_pps
        )
        self._last = now
        self._tokens -= count

        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_pps


CREDIT_S = 0.005


def batch_size(rate_pps: float, limit: int) -> int:
    """How many probes to send per call at ``rate_pps``: half a millisecond's
    worth, between 1 and ``limit``."""
    return max(1, min(limit, int(rate_pps / 2000)))


def for_rate(rate_pps: float, limit: int) -> tuple[TokenBucket, int]:
    """A bucket for ``rate_pps`` and the probes to send per call with it."""
    chunk = batch_size(rate_pps, limit)

    return TokenBucket(rate_pps, max(chunk, int(rate_pps * CREDIT_S))), chunk
