"""Witness evidence on the coordinator: windows, coverage, and the verdict.

The pure view-building first; then the real service on a real store, with
agents played by keys of tests/coordinator/agentkeys.py.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from coordinator import witnessing
from coordinator.runs import RunManager
from coordinator.witnessing import Scope
from protocol.messages import (
    Assignment,
    Finding,
    PortState,
    Proto,
    Reason,
    Seen,
    Sighting,
)
from protocol.witnessing import WitnessView
from tests.conftest import ResultFor
from tests.coordinator.agentkeys import TOKEN, Keyring

CORP_A = "172.16.1.4"  # the prober
CDE_B = "10.0.2.4"  # the destination's agent, whose witness watches
SCOPE = Scope(
    source=IPv4Network("172.16.1.0/28"),
    destination=IPv4Network("10.0.2.0/28"),
    tcp=((1, 1000),),
    udp=((53, 53),),
    windows=((100.0, 110.0),),
)


def _sighting(
    start: float,
    end: float,
    *seen: Seen,
    ip: str = CDE_B,
    dropped: int = 0,
) -> Sighting:
    return Sighting(
        agent="cde-b@test",
        subnet="cde-b",
        ip=ip,
        started_at=start,
        finished_at=end,
        seen=seen,
        dropped=dropped,
    )


def _tcp(*ports: tuple[int, int], source: str = CORP_A) -> Seen:
    return Seen(source, Proto.TCP, ports)


def test_back_to_back_windows_make_a_whole_view_of_the_source() -> None:
    found = [
        _sighting(95.0, 100.0),
        _sighting(100.0, 105.0, _tcp((22, 22))),
        _sighting(105.0, 111.0, _tcp((80, 80)), _tcp((443, 443), source="10.9.9.9")),
    ]

    assert witnessing.views(found, SCOPE) == [
        WitnessView(CDE_B, tcp=((22, 22), (80, 80)), udp=(), complete=True)
    ]


@pytest.mark.parametrize(
    "found",
    [
        [_sighting(100.0, 104.0), _sighting(106.0, 111.0)],  # a gap at 104-106
        [_sighting(101.0, 111.0)],  # started a second after the scan did
        [_sighting(99.0, 108.0)],  # stopped two seconds before it ended
        [_sighting(99.0, 111.0, dropped=1)],  # the kernel dropped a probe
        # Within the clock slack, still not whole: a witness killed just
        # before the scan ended lost the window it had not posted, and one
        # restarted leaves a gap however short.
        [_sighting(99.0, 109.8)],
        [_sighting(100.2, 111.0)],
        [_sighting(99.0, 104.0), _sighting(104.3, 111.0)],
    ],
)
def test_a_watch_with_a_gap_or_a_drop_is_not_whole(found: list[Sighting]) -> None:
    (view,) = witnessing.views(found, SCOPE)

    assert not view.complete


def test_only_scanned_ports_and_destination_addresses_count() -> None:
    found = [
        _sighting(99.0, 111.0, _tcp((900, 2000)), Seen(CORP_A, Proto.UDP, ((53, 54),))),
        _sighting(99.0, 111.0, _tcp((1, 10)), ip="10.0.3.4"),  # another subnet
        _sighting(200.0, 210.0, _tcp((1, 10))),  # long after the scan
    ]

    assert witnessing.views(found, SCOPE) == [
        WitnessView(CDE_B, tcp=((900, 1000),), udp=((53, 53),), complete=True)
    ]


# --- through the service -------------------------------------------------------


@dataclass
class Service:
    """The coordinator's service on a real store, and the agents' keys."""

    client: TestClient[Any, Any]
    keyring: Keyring
    policy: str
    dispatched: list[Assignment]
    result_for: ResultFor
    run_manager: RunManager

    async def post(self, path: str, body: bytes) -> int:
        reply = await self.client.post(
            path, data=io.BytesIO(body), headers={"Content-Type": "application/msgpack"}
        )
        return reply.status

    async def start(self) -> str:
        """Start a run of the founding policy; its chunks land in ``dispatched``."""
        reply = await self.client.post(
            "/v1/runs",
            json={"policy": self.policy, "source": "founding.yaml"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert reply.status == 201
        return str((await reply.json())["run"])

    async def witness(self, sighting: Sighting) -> None:
        """Post ``sighting`` as cde-b's witness."""
        sealed = self.keyring.seal(sighting, "cde-b")
        assert await self.post("/v1/sightings", sealed) == 204

    async def answer(self, found: dict[tuple[str, str], tuple[Finding, ...]]) -> None:
        """Answer every chunk, with the findings ``found`` holds for its pair."""
        for assignment in self.dispatched:
            pair = (assignment.src, assignment.dst)
            result = self.result_for(assignment, *found.get(pair, ()))
            sealed = self.keyring.seal(result, result.src)
            assert await self.post("/v1/results", sealed) == 200

    async def corp_a_to_cde_b(self, run_id: str) -> dict[str, Any]:
        """The report's entry for the pair the witness tests turn on."""
        report = await self.run_manager.report(run_id)
        return next(
            p for p in report["pairs"] if (p["src"], p["dst"]) == ("corp-a", "cde-b")
        )


@pytest.fixture
async def service(
    service_app: web.Application,
    keyring: Keyring,
    founding_policy: Path,
    dispatched: list[Assignment],
    result_for: ResultFor,
    run_manager: RunManager,
) -> AsyncIterator[Service]:
    async with TestClient(TestServer(service_app)) as client:
        yield Service(
            client,
            keyring,
            await asyncio.to_thread(founding_policy.read_text),
            dispatched,
            result_for,
            run_manager,
        )


def _closed(port: int) -> Finding:
    return Finding(CDE_B, Proto.TCP, ((port, port),), PortState.CLOSED, Reason.RST, 63)


async def _judged(service: Service, *seen: Seen) -> dict[str, Any]:
    """Run the founding policy; corp-a's agent finds RSTs on 22 and 80 of cde-b's
    agent, whose witness saw ``seen``; every other pair comes back empty."""
    run_id = await service.start()
    await service.answer({("corp-a", "cde-b"): (_closed(22), _closed(80))})
    issued = service.dispatched[0].issued_at
    await service.witness(_sighting(issued - 1, issued + 5, *seen))  # results: +2

    return await service.corp_a_to_cde_b(run_id)


async def test_resets_the_witness_never_saw_are_rejected_and_the_pair_passes(
    service: Service,
) -> None:
    """A firewall that rejects with RST is not a hole: the witness proves it."""
    pair = await _judged(service)

    assert pair["verdict"] == "pass"
    assert {(f["state"], f["ports"][0][0]) for f in pair["findings"]} == {
        ("rejected", 22),
        ("rejected", 80),
    }
    assert pair["witness"]["rejected_ports"] == 2


async def test_a_reset_the_witness_saw_arrive_stays_closed_and_fails_the_pair(
    service: Service,
) -> None:
    """A probe seen at the destination, answered by RST: it crossed the boundary;
    a probe seen but never answered (443) arrived, which is reachable too."""
    pair = await _judged(service, _tcp((22, 22), (443, 443)))

    assert pair["verdict"] == "fail"
    assert {(f["state"], f["ports"][0][0]) for f in pair["findings"]} == {
        ("closed", 22),
        ("rejected", 80),
        ("arrived", 443),
    }


async def test_a_sighting_for_another_subnet_is_refused(service: Service) -> None:
    sighting = _sighting(1.0, 2.0, _tcp((22, 22)))

    assert (
        await service.post("/v1/sightings", service.keyring.seal(sighting, "cde-a"))
        == 403
    )


async def test_without_sightings_findings_are_judged_as_they_came(
    service: Service,
) -> None:
    run_id = await service.start()
    await service.answer({("corp-a", "cde-b"): (_closed(80),)})

    pair = await service.corp_a_to_cde_b(run_id)

    assert pair["verdict"] == "fail"
    assert pair["witness"]["summary"] == "no witness evidence for this pair"


async def test_a_finished_run_waits_for_the_witness_window_holding_its_end(
    service: Service,
) -> None:
    now = time.time()
    run_id = await service.start()
    await service.witness(_sighting(now - 10, now - 5))
    await service.answer({})

    assert await service.run_manager.settle() == []  # cde-b's witness is behind
    await service.witness(_sighting(now - 5, time.time() + 1))
    assert await service.run_manager.settle() == [run_id]


async def test_a_silent_witness_is_not_waited_for(service: Service) -> None:
    """A witness whose last window ended minutes ago is gone: no waiting on it."""
    now = time.time()
    run_id = await service.start()
    await service.witness(
        _sighting(now - witnessing.ALIVE_S - 20, now - witnessing.ALIVE_S - 10)
    )
    await service.answer({})

    assert await service.run_manager.settle() == [run_id]
