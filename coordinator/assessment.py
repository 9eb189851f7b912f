"""What a report states about the assessment itself: who tested with what tool,
the method, the scope, what each pair's witness showed, and what was not tested.

PCI DSS 11.4.5 asks that segmentation tests cover all segmentation controls
and methods in use; an assessor reads these parts to judge whether they did,
so every gap is written down: silence must not be read as safety.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from coordinator.policy import Policy
from coordinator.verdict import PairJudgement, Verdict
from protocol.messages import PortState, Reason, Result
from protocol.ports import MAX_PORT, count, format_ports

FULL_RANGE = ((1, MAX_PORT),)


def tool() -> dict[str, str]:
    """The name and version of the software that made the report."""
    try:
        version = metadata.version("segscan")
    except metadata.PackageNotFoundError:
        version = "unknown"

    return {"name": "segscan", "version": version}


def people(policy: Policy) -> dict[str, str | None]:
    """The tester and the organisation, from the policy's ``assessment`` section."""
    return {"tester": policy.tester, "organisation": policy.organisation}


def scope(policy: Policy) -> dict[str, Any]:
    """Segments with their subnets, and the controls (intended reachability) tested."""
    controls: dict[tuple[str, ...], int] = {}
    for pair in policy.pairs:
        key = (
            policy.subnets[pair.src].segment,
            policy.subnets[pair.dst].segment,
            str(pair.expect),
            _ports_text(pair.allowed_tcp),
            _ports_text(pair.allowed_udp),
        )
        controls[key] = controls.get(key, 0) + 1

    return {
        "segments": [
            {
                "name": name,
                "subnets": [
                    {"name": s, "cidr": str(policy.subnets[s].cidr)} for s in members
                ],
            }
            for name, members in policy.segments.items()
        ],
        "controls": [
            {"from": f, "to": t, "expect": e, "tcp": tcp, "udp": udp, "pairs": n}
            for (f, t, e, tcp, udp), n in controls.items()
        ],
    }


def _ports_text(ports: tuple[tuple[int, int], ...] | None) -> str:
    return "any" if ports is None else format_ports(ports) or "none"


def method(policy: Policy, results: Sequence[Result]) -> dict[str, Any]:
    """How the test was done: engines, ports, passes, rate and the scan window."""
    scan = policy.scan
    engines = sorted({r.engine for r in results})
    summary = (
        "An agent inside each source subnet sent probes to every host address of "
        "each destination subnet the policy names, on the listed ports, "
        f"{scan.passes} passes at most {scan.rate_pps} probes per second; the "
        "coordinator judged each directed pair against the policy. A SYN-ACK, "
        "RST or UDP reply, or the destination witness seeing the probe, proves "
        "the pair reachable."
    )

    return {
        "summary": summary,
        "requirements": ["PCI DSS v4.0 11.4.5", "PCI DSS v4.0 11.4.6"],
        "engines": engines or [str(scan.engine)],
        "tcp": format_ports(scan.tcp),
        "udp": format_ports(scan.udp),
        "passes": scan.passes,
        "rate_pps": scan.rate_pps,
        "scan_started_at": min((r.started_at for r in results), default=None),
        "scan_finished_at": max((r.finished_at for r in results), default=None),
    }


def witness(judgement: PairJudgement) -> dict[str, Any]:
    """What the destination's witness added: probes it saw arrive, RSTs it
    never sent (forged on the way)."""
    arrived = sum(
        count(f.ports) for f in judgement.findings if f.reason is Reason.WITNESS
    )
    rejected = sum(
        count(f.ports) for f in judgement.findings if f.state is PortState.REJECTED
    )
    if arrived or rejected:
        summary = f"witness saw {arrived} probed ports arrive; {rejected} RSTs forged"
    else:
        summary = "no witness evidence for this pair"

    return {"arrived_ports": arrived, "rejected_ports": rejected, "summary": summary}


def limitations(
    policy: Policy, judgements: Sequence[PairJudgement], results: Sequence[Result]
) -> list[str]:
    """What this run did not test or cannot show, in words for the assessor."""
    scan = policy.scan
    notes = [_port_gap("TCP", scan.tcp), _port_gap("UDP", scan.udp)]
    notes += [
        "IPv6 was not tested: only the IPv4 subnets the policy names were probed.",
        "Protocols other than TCP and UDP (ICMP, SCTP, GRE, ESP) were not tested.",
        "The network and broadcast addresses of each subnet were not probed, and "
        "no address outside the policy's subnets was.",
        "Probes left from one agent address per source subnet; a control that "
        "treats other addresses of that subnet differently is not seen.",
        "UDP silence reads open|filtered: a service that ignores the probe's "
        "payload cannot be told from a filtered port.",
    ]
    untested = len(policy.subnets) * (len(policy.subnets) - 1) - len(policy.pairs)
    if untested:
        notes.append(
            f"{untested} directed subnet pairs are covered by no rule and were not "
            "tested (for example within a segment); a transitive path through "
            "them cannot show in this report."
        )
    doubtful = [j for j in judgements if _open(j)]
    if doubtful:
        notes.append(
            f"{len(doubtful)} pairs are inconclusive or pending: their silence "
            "proves nothing, and they need a rescan."
        )
    if not any(f.reason is Reason.WITNESS for r in results for f in r.findings):
        notes.append(
            "No destination witness evidence was recorded: a RST forged by a "
            "firewall reads as closed, that is as reachable (the cautious side)."
        )
    notes.append(
        "The result holds for the scan window only: a change to the segmentation "
        "controls afterwards needs a new test (PCI DSS 11.4.5)."
    )

    return [n for n in notes if n]


def _open(judgement: PairJudgement) -> bool:
    return judgement.verdict in (Verdict.INCONCLUSIVE, Verdict.PENDING)


def _port_gap(proto: str, ports: tuple[tuple[int, int], ...]) -> str:
    if ports == FULL_RANGE:
        return ""
    if not ports:
        return f"{proto} was not tested."
    left = MAX_PORT - count(ports)

    return (
        f"{proto}: only {count(ports)} ports were probed ({format_ports(ports)}); "
        f"the other {left} {proto} ports were not tested."
    )
