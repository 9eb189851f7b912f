"""What a SYN scan reports: findings in the report's shape, and its accounting.

Silence is not a finding for TCP (it counts in coverage only, as with the
connect engine); for UDP it is ``open|filtered``, since a silent UDP port may
well be listening.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address

from agent.engine import FindingsBuilder
from agent.replies import ProbeTable
from protocol.messages import Coverage, Finding, PortState, Proto, Reason
from protocol.ports import PortRanges, compress, subtract


@dataclass(frozen=True)
class Accounting:
    """How one scan went, for the chunk's coverage and for people."""

    planned: int  # probes: targets x ports
    sent: int  # probes sent at least once (or answered by the local kernel)
    answered: int  # probes with a proven answer
    passes: int
    frames: int  # frames written, every pass included
    duration_s: float
    send_s: float  # time spent sending, waits for late replies excluded
    rate_pps: float  # frames / send_s
    unsent: int  # frames the kernel refused to send
    tx_dropped: int  # frames the egress interface dropped
    rx_dropped: int  # replies the kernel dropped before we read them
    rejected_replies: int  # replies whose cookie or port named no probe of ours
    interfaces: tuple[str, ...]
    source_port: int

    @property
    def dropped(self) -> int:
        """Probes or replies the kernel lost: any makes the chunk inconclusive."""
        return self.unsent + self.tx_dropped + self.rx_dropped

    def coverage(self) -> Coverage:
        return Coverage(
            planned=self.planned,
            sent=self.sent,
            answered=self.answered,
            passes=self.passes,
            dropped=self.dropped,
        )

    def as_dict(self) -> dict[str, object]:
        """Every field plus ``dropped``, for ``agent scan --json``."""
        return {**asdict(self), "dropped": self.dropped}


def findings(
    targets: Sequence[IPv4Address],
    ports: Mapping[Proto, PortRanges],
    tables: Mapping[Proto, ProbeTable],
    unreachable: Mapping[int, Reason],
) -> tuple[Finding, ...]:
    """Every answer as a finding; UDP silence as ``open|filtered``; targets the
    local kernel could not reach as ``prohibited`` on every port."""
    builder = FindingsBuilder()
    whole: list[Finding] = []
    for index, target in enumerate(targets):
        ip = str(target)
        reason = unreachable.get(index)
        if reason is not None:
            whole += [
                Finding(ip, proto, ranges, PortState.PROHIBITED, reason)
                for proto, ranges in ports.items()
                if ranges
            ]
            continue
        for proto, table in tables.items():
            for port, answer, ttl in table.entries(index):
                builder.add(ip, proto, port, *answer.meaning, ttl=ttl)
        silent = _silent(ports.get(Proto.UDP, ()), tables[Proto.UDP], index)
        if silent:
            whole.append(
                Finding(
                    ip, Proto.UDP, silent, PortState.OPEN_FILTERED, Reason.NO_RESPONSE
                )
            )
    out = [*builder.build(), *whole]
    out.sort(key=lambda f: (IPv4Address(f.ip), f.proto, f.ports[0]))

    return tuple(out)


def _silent(planned: PortRanges, table: ProbeTable, index: int) -> PortRanges:
    if not planned:
        return ()

    return subtract(planned, compress(port for port, _, _ in table.entries(index)))
