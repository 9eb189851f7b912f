"""The token bucket holds the rate exactly, with bounded bursts."""

from __future__ import annotations

import pytest

from agent.bucket import TokenBucket, batch_size, for_rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_long_run_rate_is_exact_even_when_sleeps_overshoot() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10_000, burst=100, clock=clock)
    sent = 0

    while clock.now < 10.0:
        delay = bucket.take(50)
        clock.now += delay * 1.3 if delay else 0.0001  # sleeps run 30 % long
        sent += 50

    assert sent == pytest.approx(10_000 * 10.0, rel=0.01)


def test_no_more_than_a_burst_goes_out_at_once() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=10, clock=clock)
    clock.now = 60.0  # a long idle spell earns no more than the burst

    assert bucket.take(10) == 0.0
    assert bucket.take(1) == pytest.approx(0.001)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, burst=1)


def test_batches_are_half_a_millisecond_within_limits() -> None:
    assert batch_size(1_000, 64) == 1
    assert batch_size(100_000, 64) == 50
    assert batch_size(1_000_000, 64) == 64
    bucket, chunk = for_rate(300_000, 64)
    assert (chunk, bucket.burst) == (64, 1500)
