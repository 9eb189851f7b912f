"""The connect engine against listeners on loopback addresses (127.0.0.0/8 only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

import pytest

import agent.connect
from agent.connect import BURST_S, MAX_PROBES, ConnectEngine, RateLimiter
from agent.engine import ScanRequest
from agent.errors import ScanError
from protocol.messages import Coverage, Finding, PortState, Proto, Reason

if TYPE_CHECKING:
    from conftest import Listeners

OPEN = (PortState.OPEN, Reason.CONNECTED)
CLOSED = (PortState.CLOSED, Reason.REFUSED)


def request(
    *targets: str, tcp: tuple[tuple[int, int], ...], **options: object
) -> ScanRequest:
    settings: dict[str, object] = {"rate_pps": 5000, "timeout_s": 0.3, **options}
    return ScanRequest(
        targets=tuple(IPv4Address(t) for t in targets),
        tcp=tcp,
        **settings,  # type: ignore[arg-type]
    )


def by_state(
    findings: tuple[Finding, ...],
) -> dict[tuple[str, Proto, str, str], object]:
    return {(f.ip, f.proto, f.state, f.reason): f.ports for f in findings}


async def test_open_and_closed_ports_fold_into_ranges(listeners: Listeners) -> None:
    open_port = await listeners.open_tcp("127.0.0.1")
    first_closed = listeners.closed_tcp("127.0.0.1", count=20)
    closed = (first_closed, first_closed + 19)

    outcome = await ConnectEngine().scan(
        request("127.0.0.1", tcp=((open_port, open_port), closed))
    )

    assert outcome.engine == "connect"
    assert by_state(outcome.findings) == {
        ("127.0.0.1", Proto.TCP, *OPEN): ((open_port, open_port),),
        ("127.0.0.1", Proto.TCP, *CLOSED): (closed,),
    }
    assert outcome.coverage == Coverage(
        planned=21, sent=21, answered=21, passes=1, dropped=0
    )


async def test_each_address_is_scanned_on_its_own(listeners: Listeners) -> None:
    """An open port on 127.0.0.2 is closed on 127.0.0.3, which nothing serves."""
    open_port = await listeners.open_tcp("127.0.0.2")

    outcome = await ConnectEngine().scan(
        request("127.0.0.2", "127.0.0.3", tcp=((open_port, open_port),))
    )

    assert by_state(outcome.findings) == {
        ("127.0.0.2", Proto.TCP, *OPEN): ((open_port, open_port),),
        ("127.0.0.3", Proto.TCP, *CLOSED): ((open_port, open_port),),
    }
    assert outcome.coverage.planned == 2


async def test_silent_port_is_not_a_finding_but_counts_in_coverage(
    listeners: Listeners,
) -> None:
    silent = listeners.filtered_tcp("127.0.0.4")
    closed = listeners.closed_tcp("127.0.0.4")

    outcome = await ConnectEngine().scan(
        request("127.0.0.4", tcp=((silent, silent), (closed, closed)), passes=2)
    )

    assert by_state(outcome.findings) == {
        ("127.0.0.4", Proto.TCP, *CLOSED): ((closed, closed),),
    }
    assert outcome.coverage == Coverage(
        planned=2, sent=2, answered=1, passes=2, dropped=0
    )


async def test_later_passes_reprobe_only_silent_ports_in_a_new_order(
    listeners: Listeners, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent = listeners.filtered_tcp("127.0.0.5")
    first_closed = listeners.closed_tcp("127.0.0.5", count=40)
    probed = record_probes(monkeypatch)

    outcome = await ConnectEngine().scan(
        request(
            "127.0.0.5",
            tcp=((silent, silent), (first_closed, first_closed + 39)),
            passes=3,
            timeout_s=0.2,
        )
    )

    closed_order = [port for port in probed if port != silent]
    assert probed.count(silent) == 3
    assert sorted(closed_order) == list(range(first_closed, first_closed + 40))
    assert closed_order != sorted(closed_order)  # 1 in 40! to fail by chance
    assert outcome.coverage.passes == 3


async def test_no_later_pass_when_everything_answered(
    listeners: Listeners, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_closed = listeners.closed_tcp("127.0.0.6", count=5)
    probed = record_probes(monkeypatch)

    outcome = await ConnectEngine().scan(
        request("127.0.0.6", tcp=((first_closed, first_closed + 4),), passes=3)
    )

    assert len(probed) == 5
    assert outcome.coverage.passes == 1


async def test_probes_are_spread_at_the_requested_rate(listeners: Listeners) -> None:
    first_closed = listeners.closed_tcp("127.0.0.7", count=40)
    rate_pps = 100

    started = time.monotonic()
    outcome = await ConnectEngine().scan(
        request(
            "127.0.0.7", tcp=((first_closed, first_closed + 39),), rate_pps=rate_pps
        )
    )
    elapsed_s = time.monotonic() - started

    # 40 probes 10 ms apart, less the burst: a slow machine only takes longer.
    assert elapsed_s >= (40 - 1) / rate_pps - BURST_S - 0.01
    assert outcome.coverage.answered == 40


def test_rate_limiter_spaces_slots_after_a_short_burst() -> None:
    now = [100.0]
    limiter = RateLimiter(rate_per_s=50, clock=lambda: now[0])

    delays = [limiter.reserve() for _ in range(6)]

    assert delays[:2] == [0.0, 0.0]  # BURST_S (20 ms) holds one more 20 ms slot
    assert delays[2:] == pytest.approx([0.02, 0.04, 0.06, 0.08])


def test_rate_limiter_does_not_save_up_idle_time_beyond_the_burst() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=100, clock=lambda: now[0])
    limiter.reserve()
    now[0] = 60.0

    delays = [limiter.reserve() for _ in range(5)]

    assert delays == pytest.approx([0.0, 0.0, 0.0, 0.01, 0.02])


async def test_udp_reply_unreachable_and_silence(listeners: Listeners) -> None:
    """Silence on a UDP port is open|filtered where the address answered."""
    open_tcp = await listeners.open_tcp("127.0.0.8")
    echo = await listeners.echo_udp("127.0.0.8")
    quiet = listeners.silent_udp("127.0.0.8")
    unreachable = listeners.closed_tcp("127.0.0.8")  # a port no UDP socket holds

    outcome = await ConnectEngine().scan(
        request(
            "127.0.0.8",
            tcp=((open_tcp, open_tcp),),
            udp=tuple(sorted((p, p) for p in (echo, quiet, unreachable))),
            passes=1,
        )
    )

    assert by_state(outcome.findings) == {
        ("127.0.0.8", Proto.TCP, *OPEN): ((open_tcp, open_tcp),),
        ("127.0.0.8", Proto.UDP, PortState.OPEN, Reason.UDP_REPLY): ((echo, echo),),
        ("127.0.0.8", Proto.UDP, PortState.OPEN_FILTERED, Reason.NO_RESPONSE): (
            (quiet, quiet),
        ),
        ("127.0.0.8", Proto.UDP, PortState.CLOSED, Reason.PORT_UNREACHABLE): (
            (unreachable, unreachable),
        ),
    }
    assert outcome.coverage == Coverage(
        planned=4, sent=4, answered=3, passes=1, dropped=0
    )


async def test_udp_silence_where_nothing_answered_is_no_finding(
    listeners: Listeners,
) -> None:
    quiet = listeners.silent_udp("127.0.0.9")

    outcome = await ConnectEngine().scan(
        request("127.0.0.9", tcp=(), udp=((quiet, quiet),), passes=2)
    )

    assert outcome.findings == ()
    assert outcome.coverage == Coverage(
        planned=1, sent=1, answered=0, passes=2, dropped=0
    )


async def test_progress_ends_with_everything_sent(listeners: Listeners) -> None:
    first_closed = listeners.closed_tcp("127.0.0.10", count=3)
    seen: list[tuple[int, int]] = []

    await ConnectEngine().scan(
        request("127.0.0.10", tcp=((first_closed, first_closed + 2),)),
        progress=lambda sent, planned: seen.append((sent, planned)),
    )

    assert seen[-1] == (3, 3)


async def test_a_request_too_large_to_plan_is_refused() -> None:
    targets = [f"127.1.{n // 256}.{n % 256}" for n in range(MAX_PROBES // 65535 + 1)]

    with pytest.raises(ScanError, match="probes is over"):
        await ConnectEngine().scan(request(*targets, tcp=((1, 65535),)))


async def test_a_rate_of_zero_is_refused() -> None:
    with pytest.raises(ScanError, match="must be positive"):
        await ConnectEngine().scan(request("127.0.0.1", tcp=((1, 1),), rate_pps=0))


def record_probes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the engine's TCP probe to log each probed port, in order."""
    probed: list[int] = []
    real: Callable[..., object] = agent.connect._probe_tcp

    async def recording(ip: str, port: int, timeout_s: float) -> object:
        probed.append(port)
        return await real(ip, port, timeout_s)  # type: ignore[misc]

    monkeypatch.setattr(agent.connect, "_probe_tcp", recording)
    return probed
