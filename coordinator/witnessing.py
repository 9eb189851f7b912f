"""Witness evidence on the coordinator: the sightings agents post, and their
join with a pair's results when the pair is judged.

A destination agent's witness reports what arrived at its own address in
back-to-back windows.  For a pair ``S -> D`` the probes of interest are those
from addresses in S that arrived at D's agent while S's results were being
scanned.  Ports the witness saw but nobody answered become ``arrived``; a RST
for a port it never saw becomes ``rejected``, but only when its windows cover
every scan of the pair with nothing dropped: a gap in the watch never turns a
reachable port into an unreachable one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import sqlalchemy as sa
import structlog

from coordinator.policy import Policy
from coordinator.store import Store
from coordinator.tables import results, sightings
from protocol import codec, envelope
from protocol.messages import Proto, Result, Sighting
from protocol.ports import PortRanges, intersect, merge
from protocol.witnessing import WitnessView

log = structlog.get_logger(__name__)

# Clock slack between the probing host and the watching one (NTP keeps them
# within milliseconds; a window boundary is stamped by a different process).
SLACK_S = 0.5
# How long a settled run waits for witnesses' last windows (agents post one
# every 5 s, and keep the ones the coordinator missed), and how recent a
# witness's last window must be for it to count as alive and be waited for.
WAIT_S = 15.0
ALIVE_S = 600.0


@dataclass(frozen=True)
class Scope:
    """What a pair's judgement asks of the witnesses: who probed whom, on
    which ports, and when."""

    source: IPv4Network
    destination: IPv4Network
    tcp: PortRanges
    udp: PortRanges
    windows: tuple[tuple[float, float], ...]  # each result's scan, start to end


async def record(store: Store, sighting: Sighting, key_id: str, body: bytes) -> None:
    """Keep ``sighting`` as posted (``body`` is the signed envelope)."""
    row = {
        "subnet": sighting.subnet,
        "agent": sighting.agent,
        "ip": sighting.ip,
        "started_at": sighting.started_at,
        "finished_at": sighting.finished_at,
        "dropped": sighting.dropped,
        "key_id": key_id,
        "envelope": body,
    }
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(sightings).values(**row))
    if sighting.dropped:
        log.warning(
            "witness_dropped",
            agent=sighting.agent,
            subnet=sighting.subnet,
            dropped=sighting.dropped,
        )


async def between(store: Store, start: float, end: float) -> dict[str, list[Sighting]]:
    """Every sighting whose window touches ``[start, end]``, by subnet."""
    query = (
        sa.select(sightings.c.subnet, sightings.c.envelope)
        .where(
            sightings.c.finished_at >= start - SLACK_S,
            sightings.c.started_at <= end + SLACK_S,
        )
        .order_by(sightings.c.started_at)
    )
    found: defaultdict[str, list[Sighting]] = defaultdict(list)
    async with store.engine.connect() as conn:
        for row in (await conn.execute(query)).all():
            found[row.subnet].append(_opened(row.envelope))

    return dict(found)


async def behind(store: Store, run_id: str, now: float) -> list[str]:
    """Subnets whose witness is alive but has not yet reported past the run's
    last result, while that is worth waiting for: a run settled a moment early
    would be judged without the window holding its last probes."""
    last_result = sa.select(sa.func.max(results.c.received_at)).where(
        results.c.run_id == run_id
    )
    latest = sa.select(
        sightings.c.subnet, sa.func.max(sightings.c.finished_at).label("until")
    ).group_by(sightings.c.subnet)
    async with store.engine.connect() as conn:
        last = (await conn.execute(last_result)).scalar()
        if last is None or now > last + WAIT_S:
            return []
        rows = (await conn.execute(latest)).all()

    return sorted(
        row.subnet for row in rows if last - ALIVE_S <= row.until < last + SLACK_S
    )


def _opened(body: bytes) -> Sighting:
    # Verified on intake; what is stored is what the agent signed.
    return codec.decode(envelope.open_envelope(body, len(body)).payload, Sighting)


def views(found: Iterable[Sighting], scope: Scope) -> list[WitnessView]:
    """One view per watched address in the destination: what arrived there
    from the source on the scanned ports, and whether the watch was whole."""
    by_ip: defaultdict[str, list[Sighting]] = defaultdict(list)
    for sighting in found:
        if IPv4Address(sighting.ip) in scope.destination and _touches(
            sighting, scope.windows
        ):
            by_ip[sighting.ip].append(sighting)
    out = []
    for ip, watched in sorted(by_ip.items()):
        seen: dict[Proto, list[tuple[int, int]]] = {Proto.TCP: [], Proto.UDP: []}
        for sighting in watched:
            for entry in sighting.seen:
                if IPv4Address(entry.source) in scope.source:
                    seen[entry.proto] += entry.ports
        whole = all(s.dropped == 0 for s in watched) and all(
            _covered(window, watched) for window in scope.windows
        )
        out.append(
            WitnessView(
                ip,
                tcp=intersect(merge(seen[Proto.TCP]), scope.tcp),
                udp=intersect(merge(seen[Proto.UDP]), scope.udp),
                complete=whole,
            )
        )

    return out


def _touches(sighting: Sighting, windows: Iterable[tuple[float, float]]) -> bool:
    return any(
        sighting.finished_at >= start - SLACK_S and sighting.started_at <= end + SLACK_S
        for start, end in windows
    )


def _covered(window: tuple[float, float], watched: Sequence[Sighting]) -> bool:
    """Whether back-to-back windows of ``watched`` span all of ``window``,
    widened by the clock slack on each side.

    Only a witness that was watching the whole time may call a RST forged, so
    the slack makes the test stricter, never looser: a witness killed during a
    scan loses the window it had not posted yet, and a probe that arrived
    then must not count as unseen.  One witness's windows follow each other
    exactly; a restarted witness leaves a gap.
    """
    start, end = window[0] - SLACK_S, window[1] + SLACK_S
    reached = start
    for sighting in sorted(watched, key=lambda s: s.started_at):
        if sighting.started_at > reached:
            break  # a gap nobody watched
        reached = max(reached, sighting.finished_at)
        if reached >= end:
            return True

    return False


def pair_views(
    found: Mapping[str, Sequence[Sighting]],
    policy: Policy,
    pair: tuple[str, str],
    results: Iterable[Result],
) -> list[WitnessView]:
    """The views of the destination's witnesses on pair ``(src, dst)`` while
    its ``results`` were scanned; none when that destination never reported."""
    src, dst = pair
    watched = found.get(dst)
    if not watched or src not in policy.subnets or dst not in policy.subnets:
        return []
    scope = Scope(
        source=policy.subnets[src].cidr,
        destination=policy.subnets[dst].cidr,
        tcp=policy.scan.tcp,
        udp=policy.scan.udp,
        windows=tuple((r.started_at, r.finished_at) for r in results),
    )

    return views(watched, scope)
