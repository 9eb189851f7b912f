"""How what a destination's witness saw joins what the probing side saw.

A probe that reached the destination proves the path even when no service
answers (``arrived``).  A RST or port-unreachable that came back while the
destination's witness saw no probe was forged on the way, by a firewall that
rejects: ``rejected``, which is not reachable.  Agents and the coordinator
share these rules, so a scan run by hand and a run's report read alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from protocol.messages import Finding, PortState, Proto, Reason
from protocol.ports import PortRanges, merge, subtract


@dataclass(frozen=True)
class WitnessView:
    """What the witness at ``ip`` saw of one source's probes."""

    ip: str
    tcp: PortRanges = ()
    udp: PortRanges = ()
    complete: bool = True

    def ports(self, proto: Proto) -> PortRanges:
        return self.tcp if proto is Proto.TCP else self.udp

    def findings(self) -> tuple[Finding, ...]:
        """The probes seen, as ``arrived`` findings on ``ip``."""
        return tuple(
            Finding(self.ip, proto, ports, PortState.ARRIVED, Reason.WITNESS)
            for proto, ports in ((Proto.TCP, self.tcp), (Proto.UDP, self.udp))
            if ports
        )


def combine(
    findings: Iterable[Finding], views: Iterable[WitnessView]
) -> tuple[Finding, ...]:
    """A source's findings joined with the destinations' witnesses' views.

    On every address with a witness: ``closed`` ports the witness did not see
    become ``rejected`` (only when the witness missed nothing: otherwise they
    stay closed, the reachable and therefore safe reading); ports the witness
    saw that did not answer open or closed become ``arrived``.  Findings on
    addresses without a witness pass through unchanged.
    """
    by_ip = {view.ip: view for view in views}
    out: list[Finding] = []
    answered: dict[tuple[str, Proto], PortRanges] = {}
    for finding in findings:
        view = by_ip.get(finding.ip)
        if view is None:
            out.append(finding)
            continue
        seen = view.ports(finding.proto)
        if finding.state in (PortState.OPEN, PortState.CLOSED):
            key = (finding.ip, finding.proto)
            answered[key] = merge([*answered.get(key, ()), *finding.ports])
        out += _relabel(finding, seen, view.complete)
    for view in by_ip.values():
        for proto in Proto:
            arrived = subtract(view.ports(proto), answered.get((view.ip, proto), ()))
            if arrived:
                out.append(
                    Finding(view.ip, proto, arrived, PortState.ARRIVED, Reason.WITNESS)
                )

    return _tidy(out)


def _relabel(finding: Finding, seen: PortRanges, complete: bool) -> list[Finding]:
    if finding.state is PortState.OPEN:
        return [finding]
    if finding.state is PortState.CLOSED:
        unseen = subtract(finding.ports, seen) if complete else ()
        kept = subtract(finding.ports, unseen)
        parts = [(kept, finding.state), (unseen, PortState.REJECTED)]
    else:  # silent or refused on the way: the arrivals are added by the caller
        parts = [(subtract(finding.ports, seen), finding.state)]

    return [
        Finding(finding.ip, finding.proto, ports, state, finding.reason, finding.ttl)
        for ports, state in parts
        if ports
    ]


def _tidy(findings: list[Finding]) -> tuple[Finding, ...]:
    findings.sort(key=lambda f: (IPv4Address(f.ip), f.proto, f.ports[0]))

    return tuple(findings)
