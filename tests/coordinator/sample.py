"""A founding-case report made the way the coordinator makes one, without the lab.

Every chunk of the founding policy gets a full-coverage result: filtered
everywhere, the workloads open where the lab's firewall lets them through,
and the planted hole, corp-b -> 10.0.3.5 tcp/5432, open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordinator.policy import load_policy
from coordinator.runs import RunManager
from protocol import codec
from protocol.messages import Assignment, Finding, PortState, Proto, Reason, Result
from protocol.ports import PortRanges, subtract

HOLE = ("corp-b", "cde-c")
OPEN: dict[tuple[str, str], dict[str, PortRanges]] = {
    HOLE: {"10.0.3.5": ((5432, 5432),)},
    **{
        (f"cde-{c}", "corp-a"): {"172.16.1.5": ((80, 80), (443, 443))}
        for c in "abcdefghi"
    },
    **{(f"cde-{c}", "corp-b"): {"172.16.2.5": ((8080, 8080),)} for c in "abcdefghi"},
}


def findings_for(assignment: Assignment) -> tuple[Finding, ...]:
    """What an agent would see: the .5 host of the destination, filtered but
    for what the firewall lets through."""
    opened = OPEN.get((assignment.src, assignment.dst), {})
    ip = next(iter(opened), assignment.targets[0].rsplit(".", 1)[0] + ".5")
    ports = opened.get(ip, ())
    out = []
    if ports:
        out.append(Finding(ip, Proto.TCP, ports, PortState.OPEN, Reason.SYN_ACK, 63))
    rest = subtract(assignment.tcp, ports)
    if rest:
        out.append(Finding(ip, Proto.TCP, rest, PortState.FILTERED, Reason.NO_RESPONSE))
    if assignment.udp:
        out.append(
            Finding(
                ip,
                Proto.UDP,
                assignment.udp,
                PortState.OPEN_FILTERED,
                Reason.NO_RESPONSE,
            )
        )

    return tuple(out)


async def founding_report(
    run_manager: RunManager,
    dispatched: list[Assignment],
    result_for: Callable[..., Result],
    policy_path: Path,
) -> dict[str, Any]:
    """Run the founding policy through the real run manager and settle it."""
    run = await run_manager.start(load_policy(policy_path))
    for assignment in list(dispatched):
        result = result_for(assignment, *findings_for(assignment))
        await run_manager.store.add_result(result, codec.encode(result))
    await run_manager.settle()

    return await run_manager.report(run.id)


def pair(report: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
    """The report's entry for ``src -> dst``."""
    return next(p for p in report["pairs"] if (p["src"], p["dst"]) == (src, dst))
