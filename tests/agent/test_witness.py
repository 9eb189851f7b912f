"""The witness: its reports, windows and messages, and a real capture."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.errors import CoordinatorError
from agent.syn import raw_sockets_available
from agent.witness import Sightings, Witness, WitnessReport, _ports, own_address
from protocol.messages import Finding, PortState, Proto, Reason, Seen, Sighting
from protocol.witnessing import WitnessView, combine
from tests.agent import synlab
from tests.agent.conftest import free_port

DST = "10.0.2.10"


def test_report_views_one_source_and_gives_arrived_findings() -> None:
    report = WitnessReport(
        own_ip=DST,
        started_at=0.0,
        finished_at=1.0,
        seen={
            ("10.0.1.4", Proto.TCP): ((22, 22),),
            ("10.0.9.9", Proto.UDP): ((53, 53),),
        },
        dropped=0,
    )

    view = report.view("10.0.1.4")

    assert view == WitnessView(DST, tcp=((22, 22),), udp=(), complete=True)
    assert view.findings() == (
        Finding(DST, Proto.TCP, ((22, 22),), PortState.ARRIVED, Reason.WITNESS),
    )


def test_report_is_the_message_the_coordinator_keeps() -> None:
    report = WitnessReport(
        own_ip=DST,
        started_at=10.0,
        finished_at=15.0,
        seen={
            ("10.0.9.9", Proto.UDP): ((53, 53),),
            ("10.0.1.4", Proto.TCP): ((22, 22), (80, 90)),
        },
        dropped=3,
    )

    sighting = report.sighting("cde-b@host", "cde-b")

    assert (sighting.agent, sighting.subnet, sighting.ip) == (
        "cde-b@host",
        "cde-b",
        DST,
    )
    assert (sighting.started_at, sighting.finished_at, sighting.dropped) == (10, 15, 3)
    assert sighting.seen == (
        Seen("10.0.1.4", Proto.TCP, ((22, 22), (80, 90))),
        Seen("10.0.9.9", Proto.UDP, ((53, 53),)),
    )


def test_port_bitmaps_become_ranges() -> None:
    bitmap = bytearray(65536)
    for port in (0, 1, 2, 3, 80, 443, 444, 65535):
        bitmap[port] = 1

    assert _ports(bitmap) == ((1, 3), (80, 80), (443, 444), (65535, 65535))
    assert _ports(bytearray(65536)) == ()


@pytest.fixture(scope="module")
def lab() -> Iterator[synlab.SynLab]:
    if not raw_sockets_available():
        pytest.skip("needs root for namespaces and packet sockets")
    with synlab.syn_lab() as built:
        yield built


@pytest.mark.root
def test_witness_tells_forged_resets_from_real_ones(lab: synlab.SynLab) -> None:
    """The router's RSTs become rejected; a probe the target dropped, arrived."""
    with lab.witness("10.201.1.1") as watch:
        result = lab.scan("10.201.1.1/32", "1-400,5000")

    assert watch.report is not None
    view = watch.report.view("10.201.0.1")
    assert view.complete
    states = {(f.state, f.ports) for f in combine(result.findings, [view])}
    assert states == {
        (PortState.OPEN, ((22, 22), (80, 80))),
        (PortState.CLOSED, ((1, 21), (23, 79), (81, 199), (211, 299), (306, 400))),
        (PortState.REJECTED, ((200, 210),)),
        (PortState.PROHIBITED, ((300, 305),)),
        (PortState.ARRIVED, ((5000, 5000),)),
    }


@pytest.mark.root
def test_windows_follow_each_other_and_split_what_was_seen(
    lab: synlab.SynLab,
) -> None:
    """Two takes: back-to-back windows, each holding only its own probes."""
    with lab.witness("10.201.1.1") as watch:
        lab.scan("10.201.1.1/32", "22", passes=1)
        watch.take()
        lab.scan("10.201.1.1/32", "80", passes=1)

    first, second = watch.reports
    assert first.finished_at == second.started_at
    assert first.seen == {("10.201.0.1", Proto.TCP): ((22, 22),)}
    assert second.seen == {("10.201.0.1", Proto.TCP): ((80, 80),)}
    assert first.dropped == second.dropped == 0


@pytest.mark.root
async def test_sightings_are_posted_window_after_window_until_cancelled() -> None:
    """On loopback: a refused connect is a probe seen; windows leave no gap, and
    the last one is posted when the agent stops."""
    if not raw_sockets_available():
        pytest.skip("needs root for packet sockets")
    posted: list[Sighting] = []

    async def post(sighting: Sighting) -> None:
        posted.append(sighting)

    witness = Witness(IPv4Address("127.0.0.1"), interface="lo")
    task = asyncio.create_task(
        Sightings(witness, post, "corp-a@test", "corp-a", interval_s=0.2).run()
    )
    await asyncio.sleep(0.1)
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert len(posted) >= 3
    assert all(a.finished_at == b.started_at for a, b in itertools.pairwise(posted))
    assert {s.subnet for s in posted} == {"corp-a"}
    seen = [
        e
        for s in posted
        for e in s.seen
        if e.source == "127.0.0.1" and e.proto == "tcp"
    ]
    assert any(first <= port <= last for e in seen for first, last in e.ports)


def test_own_address_is_where_this_host_sends_from() -> None:
    assert own_address([IPv4Network("127.0.0.0/8")]) is None  # loopback never
    assert own_address([]) is None


async def test_windows_the_coordinator_missed_are_posted_first_when_it_is_back() -> (
    None
):
    posted: list[Sighting] = []
    down = True

    async def post(sighting: Sighting) -> None:
        if down:
            raise CoordinatorError("http://coordinator", "connection refused")
        posted.append(sighting)

    sightings = Sightings(_NoWitness(), post, "cde-b@test", "cde-b")
    for start in (0.0, 5.0):
        await sightings._send(_window(start))
    down = False
    await sightings._send(_window(10.0))

    assert [s.started_at for s in posted] == [0.0, 5.0, 10.0]
    assert not sightings.pending


def _window(start: float) -> WitnessReport:
    return WitnessReport("10.0.2.4", start, start + 5.0, {}, 0)


class _NoWitness(Witness):
    """Never opened: the posting logic alone is under test."""

    def __init__(self) -> None:
        self.own_ip = IPv4Address("10.0.2.4")
