"""Runs from plan to verdict: start, rescan, judge, and settle when done.

A run is settled when every chunk is done or dead (coordinator/accounting.py)
or its deadline has passed; then its report is frozen into the store.  A
rescan is a new run over the named pairs with fresh assignments, so the
original run stays as evidence.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog

from coordinator import (
    accounting,
    budget,
    leasing,
    outcomes,
    planner,
    refusals,
    report,
    witnessing,
)
from coordinator.dispatch import Dispatcher
from coordinator.errors import NotFoundError, UsageError
from coordinator.policy import Pair, Policy, parse_policy
from coordinator.store import PairRecord, RunRecord, Store
from coordinator.vault import Vault
from coordinator.verdict import PairJudgement, Verdict, judge_pair, overall
from protocol.ports import PortRanges
from protocol.witnessing import WitnessView

log = structlog.get_logger(__name__)

# Slack on top of the planned scan time before silence turns a pair inconclusive.
DEADLINE_MIN_S = 120.0
DEADLINE_FACTOR = 4.0


@dataclass
class RunManager:
    store: Store
    dispatcher: Dispatcher
    vault: Vault | None = None  # where settled runs' evidence bundles go
    # The service's settler and a caller may settle at once: one at a time,
    # or a run would be judged and sealed twice, its bundle written over
    # while the first is read.
    _settling: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def start(
        self,
        policy: Policy,
        kind: str = "full",
        base_run: str | None = None,
        pairs: tuple[Pair, ...] | None = None,
    ) -> RunRecord:
        """Plan, record and dispatch a run; return it."""
        now = time.time()
        run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        run_id += "-" + uuid.uuid4().hex[:6]
        chunks = planner.plan(policy, pairs)
        estimate = budget.estimate_s(chunks, policy)
        run = RunRecord(
            id=run_id,
            kind=kind,
            base_run=base_run,
            policy_source=policy.source,
            policy_text=policy.text,
            policy_sha256=policy.sha256,
            created_at=now,
            deadline=now + max(DEADLINE_MIN_S, DEADLINE_FACTOR * estimate),
            finished_at=None,
            verdict=None,
            report=None,
        )
        # Made as they are written: a large estate's assignments never all
        # sit in memory at once.
        assignments = (
            (planner.to_assignment(c, run_id, policy, now), c.probes) for c in chunks
        )
        dst_slots = budget.slots_by_dst((c.pair.src, c.pair.dst) for c in chunks)
        await self.store.add_run(
            run,
            (_pair_record(p) for p in pairs or policy.pairs),
            assignments,
            dst_slots,
        )

        # The first wave now, so a queue that cannot be reached fails the
        # request; the rest as the destinations' budgets free up.
        await leasing.pump(self.store, self.dispatcher)
        log.info("run_started", run=run_id, kind=kind, chunks=len(chunks))

        return run

    async def rescan(
        self, src: str, dst: str, direction: str, base_run: str | None
    ) -> RunRecord:
        """A new run over one subnet pair, planned from the base run's policy."""
        wanted = [(src, dst)] if direction == "forward" else [(src, dst), (dst, src)]

        return await self.rescan_pairs(wanted, base_run)

    async def rescan_pairs(
        self, wanted: list[tuple[str, str]], base_run: str | None
    ) -> RunRecord:
        """A new run over the directed pairs ``wanted`` that a policy rule covers."""
        base = await self.find(base_run or "latest", kind="full")
        policy = parse_policy(base.policy_text, base.policy_source)
        for name in {name for pair in wanted for name in pair}:
            if name not in policy.subnets:
                known = ", ".join(sorted(policy.subnets))
                raise NotFoundError(name, f"no such subnet in the policy ({known})")
        pairs = tuple(p for s, d in wanted if (p := policy.pair(s, d)) is not None)
        if not pairs:
            named = ", ".join(f"{s}:{d}" for s, d in wanted)
            raise UsageError(named, "no policy rule covers this pair")

        return await self.start(policy, kind="rescan", base_run=base.id, pairs=pairs)

    async def find(self, run_id: str, kind: str | None = None) -> RunRecord:
        """A run by id, or the newest one for ``latest``."""
        if run_id == "latest":
            run = await self.store.latest_run(kind)
        else:
            run = await self.store.run(run_id)
        if run is None:
            raise NotFoundError(run_id, "no such run")

        return run

    async def judge(
        self, run: RunRecord, final: bool = False
    ) -> tuple[list[PairJudgement], Verdict]:
        """Judge every pair of ``run`` from the results stored so far, with
        what the destinations' witnesses saw while it ran."""
        until = run.finished_at or time.time()
        seen = await witnessing.between(self.store, run.created_at, until)
        policy = parse_policy(run.policy_text, run.policy_source) if seen else None

        def witnesses(o: outcomes.PairOutcome) -> list[WitnessView]:
            if policy is None:
                return []
            pair = (o.pair.src, o.pair.dst)
            return witnessing.pair_views(seen, policy, pair, o.results.values())

        judgements = [
            judge_pair(o.pair, o.chunks, o.results, final, witnesses(o))
            async for o in outcomes.by_pair(self.store, run.id)
        ]
        judgements.sort(key=lambda j: (j.src, j.dst))

        return judgements, overall(judgements)

    async def report(self, run_id: str) -> dict[str, Any]:
        """The run's report: frozen once settled, live while it runs."""
        run = await self.find(run_id)
        if run.report is not None:
            return run.report
        judgements, verdict = await self.judge(run)
        body = report.build(run, judgements, verdict, await self.store.results(run.id))

        return body | {"refusals": await refusals.for_run(self.store, run)}

    async def progress(self, run_id: str) -> dict[str, Any]:
        """How far a run has come."""
        run = await self.find(run_id)
        counts = await self.store.chunk_counts(run.id)

        return {
            "run": run.id,
            "kind": run.kind,
            "finished": run.finished_at is not None,
            "verdict": run.verdict,
            "chunks": sum(counts.values()),
            "chunks_done": counts.get("done", 0),
            "chunks_by_state": counts,
            "deadline_in_s": max(0.0, round(run.deadline - time.time(), 1)),
        }

    async def settle(self) -> list[str]:
        """Freeze the report of every run that is complete or past its deadline."""
        async with self._settling:
            return await self._settle()

    async def _settle(self) -> list[str]:
        settled = []
        now = time.time()
        for run in await self.store.unfinished_runs():
            complete = not await accounting.unsettled(self.store, run.id)
            if not complete and now < run.deadline:
                continue
            if complete and await witnessing.behind(self.store, run.id, now):
                continue
            judgements, verdict = await self.judge(run, final=True)
            finished = RunRecord(**{**run.__dict__, "finished_at": now})
            results = await self.store.results(run.id)
            body = report.build(finished, judgements, verdict, results)
            body["refusals"] = await refusals.for_run(self.store, finished)
            # Sealed before the run shows finished, so a waiting client finds it.
            await self._seal(finished, body)
            await self.store.finish_run(run.id, str(verdict), body, now)
            log.info(
                "run_settled",
                run=run.id,
                verdict=str(verdict),
                elapsed_s=round(now - run.created_at, 1),
                timed_out=not complete,
            )
            settled.append(run.id)

        return settled

    async def _seal(self, run: RunRecord, body: dict[str, Any]) -> None:
        if self.vault is None:
            return
        try:
            signer = self.dispatcher.signer
            path = await self.vault.seal(self.store, run, body, signer)
        except Exception:  # the verdict stands without its bundle; say so loudly
            log.exception("evidence_failed", run=run.id)
            return
        log.info("evidence_sealed", run=run.id, bundle=str(path))


def _pair_record(pair: Pair) -> PairRecord:
    allowed: dict[str, Any] | None = None
    if pair.allowed_tcp is not None or pair.allowed_udp is not None:
        allowed = _allowed(pair.allowed_tcp or (), pair.allowed_udp or ())

    return PairRecord(pair.src, pair.dst, str(pair.expect), allowed)


# One record per rule, shared by its pairs (the store encodes it once); never
# changed once made.
@functools.lru_cache(maxsize=1024)
def _allowed(tcp: PortRanges, udp: PortRanges) -> dict[str, Any]:
    return {"tcp": tcp or [], "udp": udp or []}
