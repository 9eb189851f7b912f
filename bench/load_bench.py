"""Benchmark: the coordinator's result intake under load; a big run's plan and judge.

For each database (a throwaway PostgreSQL server with durable settings, and an
SQLite file) it starts ``coordinator serve`` as a process of its own, keeps a
run's chunks leased a few thousand ahead of the load (as a real run's budget
would), and has simulated agents post signed results of ``--findings``
findings each over keep-alive connections, open loop at ``--rate`` posts per
second for ``--duration`` seconds.  Latency runs from when a post was due, so
a coordinator that falls behind shows it.  It prints results and findings per
second, p50/p99 latency and the coordinator's memory over the run.  Then, in a
process of its own, it plans and judges a run of ``--subnets`` subnets in 10
segments on SQLite and prints the time and peak memory.

    .venv/bin/python bench/load_bench.py [--duration 30] [--rate 2000]
        [--backend postgresql,sqlite] [--subnets 1000]

Everything is bounded: each phase stops at its duration, and the whole
benchmark at ``--duration`` times the phases plus setup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
)

from coordinator.store import ChunkState, Store  # noqa: E402
from coordinator.tables import chunks, pairs, runs  # noqa: E402
from protocol import codec, envelope  # noqa: E402
from protocol.envelope import Context, Signed  # noqa: E402
from protocol.messages import (  # noqa: E402
    Assignment,
    Coverage,
    Finding,
    PortState,
    Proto,
    Reason,
    Result,
)
from protocol.signing import generate_key, key_id  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

SUBNETS = 50  # simulated agents, one subnet and key each
CONNECTIONS = 64
# Posts made ready (chunk leased in the store, result built and signed)
# ahead of the load: agents build their results on their own machines, so the
# bench does its share before the clock starts, up to what fits in memory.
AHEAD = 80_000
SEED_BLOCK = 5_000
SAMPLE_S = 5.0
START_TIMEOUT_S = 30.0
TOKEN = "bench-operator-token-0123456789abcdef"
STATES = [
    (PortState.FILTERED, Reason.NO_RESPONSE),
    (PortState.CLOSED, Reason.RST),
    (PortState.OPEN, Reason.SYN_ACK),
    (PortState.PROHIBITED, Reason.ADMIN_PROHIBITED),
]


@dataclass
class Load:
    """What one intake phase measured."""

    backend: str
    posted: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    findings: float = 0.0
    # CPU seconds over the load: the coordinator (with any workers), the
    # PostgreSQL server, and this process (the simulated agents).
    cpu_s: dict[str, float] = field(default_factory=dict)


def main() -> int:
    args = _parser().parse_args()
    if args.command == "plan":
        print(json.dumps(asyncio.run(plan_and_judge(args.subnets))))
        return 0
    print(f"segscan load benchmark: {os.cpu_count()} cores, {_machine()}")
    print(
        f"intake: {args.duration:.0f} s at each offered rate, {args.findings} "
        f"findings per signed result, {CONNECTIONS} connections, {SUBNETS} agents"
    )
    for backend in args.backend.split(","):
        for rate in (int(r) for r in args.rate.split(",")):
            load = asyncio.run(intake(backend, rate, args.duration, args.findings))
            _print_load(load, rate)
    if args.subnets:
        _print_plan(args.subnets)

    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="all", choices=["all", "plan"])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each")
    parser.add_argument("--rate", default="2000,500", help="posts/s offered, a list")
    parser.add_argument("--findings", type=int, default=100, help="per result")
    parser.add_argument("--backend", default="postgresql,sqlite")
    parser.add_argument(
        "--subnets", type=int, default=1000, help="for plan/judge; 0 skips it"
    )

    return parser


# --- intake ------------------------------------------------------------------


async def intake(backend: str, rate: int, duration_s: float, findings: int) -> Load:
    """Offer ``rate`` posts per second for ``duration_s``; what came of it."""
    with tempfile.TemporaryDirectory(prefix="segscan-bench-") as tmp:
        base = Path(tmp)
        keys = _agent_keys(base / "agent-keys")
        async with (
            _database(backend, base) as (url, db_pid),
            _coordinator(url, base, db_pid) as proc,
        ):
            store = await Store.open(url)
            try:
                load = await _offer(store, proc, keys, rate, duration_s, findings)
            finally:
                await store.close()
        load.backend = backend

        return load


@asynccontextmanager
async def _database(backend: str, base: Path) -> AsyncIterator[tuple[str, int | None]]:
    """The database's URL, and the server's process id if it has one."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{base / 'coordinator.db'}", None
        return
    server = await asyncio.to_thread(PostgresServer.start, True)
    try:
        url = await asyncio.to_thread(server.new_database)
        pid = (server.base / "data/postmaster.pid").read_text().split()[0]
        yield url, int(pid)
    finally:
        await asyncio.to_thread(server.stop)


@dataclass(frozen=True)
class Coordinator:
    pid: int
    port: int
    db_pid: int | None


@asynccontextmanager
async def _coordinator(
    url: str, base: Path, db_pid: int | None
) -> AsyncIterator[Coordinator]:
    # Opened here first, so the schema exists before the service starts.
    await (await Store.open(url)).close()
    port = _free_port()
    env = {
        **os.environ,
        "SEGSCAN_AGENT_KEYS": str(base / "agent-keys"),
        "SEGSCAN_STATE_DIR": str(base / "state"),
        "SEGSCAN_OPERATOR_TOKEN": TOKEN,
        # Nothing listens here: the coordinator's SQS calls fail at once,
        # on loopback, instead of reaching for AWS.
        "SEGSCAN_SQS_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    argv = [str(REPO / ".venv/bin/coordinator"), "serve", "--db", url]
    argv += ["--listen", f"127.0.0.1:{port}"]
    proc = _spawn(argv, env, base / "coordinator.log")
    try:
        await _wait_listening(port, proc)
        yield Coordinator(proc.pid, port, db_pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("the coordinator did not start; see coordinator.log")


def _agent_keys(directory: Path) -> dict[str, Ed25519PrivateKey]:
    """One key per simulated subnet; the coordinator trusts ``<subnet>.pub``."""
    return {
        f"agent-{n:03d}": generate_key(directory / f"agent-{n:03d}")
        for n in range(SUBNETS)
    }


async def _offer(
    store: Store,
    coordinator: Coordinator,
    keys: dict[str, Ed25519PrivateKey],
    rate: int,
    duration_s: float,
    findings: int,
) -> Load:
    run_id = await _new_run(store, list(keys))
    ready: asyncio.Queue[bytes] = asyncio.Queue()
    made = _Maker(coordinator.port, keys, _findings(findings))
    primed = asyncio.Event()
    prime = min(AHEAD, int(rate * duration_s))
    total = int(rate * duration_s)
    seeder = asyncio.create_task(
        _seed(store, run_id, made, ready, (primed, prime), total)
    )
    await primed.wait()
    load = Load("")
    jobs: asyncio.Queue[float | None] = asyncio.Queue()
    workers = [
        asyncio.create_task(_poster(coordinator.port, ready, jobs, load))
        for _ in range(CONNECTIONS)
    ]
    sampler = asyncio.create_task(_sample_rss(coordinator.pid, load))
    before = await _findings_total(coordinator.port)
    cpu_before = _cpu(coordinator)
    started = time.monotonic()
    try:
        await _schedule(jobs, rate, duration_s)
        for _ in workers:
            await jobs.put(None)
        await asyncio.wait_for(asyncio.gather(*workers), timeout=duration_s + 300)
    finally:
        load.elapsed_s = time.monotonic() - started
        load.cpu_s = {k: v - cpu_before[k] for k, v in _cpu(coordinator).items()}
        for task in (seeder, sampler, *workers):
            task.cancel()
        await asyncio.gather(seeder, sampler, *workers, return_exceptions=True)
    load.findings = await _findings_total(coordinator.port) - before

    return load


async def _schedule(
    jobs: asyncio.Queue[float | None], rate: int, duration_s: float
) -> None:
    """Put each post's due time on the queue as it falls due."""
    started = time.monotonic()
    total = int(rate * duration_s)
    for n in range(total):
        due = started + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait(due)


async def _poster(
    port: int,
    ready: asyncio.Queue[bytes],
    jobs: asyncio.Queue[float | None],
    load: Load,
) -> None:
    """One agent connection: post a result for each due time, keep-alive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (due := await jobs.get()) is not None:
            writer.write(await ready.get())
            status = await _response(reader)
            load.latencies_s.append(time.monotonic() - due)
            if status == 200:
                load.posted += 1
            else:
                load.failed += 1
    finally:
        writer.close()


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/results HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/msgpack\r\nContent-Length: {len(body)}\r\n\r\n"
    )

    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (
            int(v)
            for k, _, v in (x.partition(":") for x in lines)
            if k.lower() == "content-length"
        ),
        0,
    )
    await reader.readexactly(length)

    return status


@dataclass(frozen=True)
class _Maker:
    """Builds the request an agent of ``src`` posts for a chunk."""

    port: int
    keys: dict[str, Ed25519PrivateKey]
    findings: tuple[Finding, ...]

    def request(self, chunk: str, src: str) -> bytes:
        body = _signed_result(chunk, src, self.keys[src], self.findings)

        return _request(self.port, body)


def _signed_result(
    chunk: str, src: str, key: Ed25519PrivateKey, findings: tuple[Finding, ...]
) -> bytes:
    now = time.time()
    result = Result(
        assignment_id=chunk,
        run_id="bench",
        src=src,
        dst="target",
        agent=f"{src}@bench",
        engine="syn",
        started_at=now - 60,
        finished_at=now,
        coverage=Coverage(14 * 65539, 14 * 65539, len(findings), 2),
        findings=findings,
    )
    payload = codec.encode(result)
    signature = key.sign(envelope.signing_input(Context.RESULT, payload))

    return msgspec.msgpack.encode(Signed(payload, key_id(key.public_key()), signature))


def _findings(n: int) -> tuple[Finding, ...]:
    """``n`` findings as a /28 answers: a few addresses, many port ranges."""
    out = []
    for i in range(n):
        state, reason = STATES[i % len(STATES)]
        first = 1 + (i * 653) % 65000
        out.append(
            Finding(
                f"10.9.{i % 7}.{1 + i % 14}",
                Proto.TCP if i % 5 else Proto.UDP,
                ((first, first + i % 30),),
                state,
                reason,
                63 if state is not PortState.FILTERED else None,
            )
        )

    return tuple(out)


async def _new_run(store: Store, subnets: list[str]) -> str:
    """A run whose chunks the seeder adds as the load goes.

    One chunk is never answered: without it the coordinator would find the
    run complete before the first chunks are seeded and settle it, and every
    post would then be a late result.
    """
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    now = time.time()
    row = {
        "id": run_id, "kind": "full", "base_run": None, "policy_source": "bench",
        "policy_text": "version: 1\n", "policy_sha256": "0" * 64,
        "created_at": now, "deadline": now + 86_400,
    }  # fmt: skip
    held = {
        "id": uuid.uuid4().hex, "run_id": run_id, "src": subnets[0],
        "dst": "target", "probes": 1, "state": ChunkState.LEASED,
        "assignment": b"", "leased_at": now,
    }  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(runs).values(**row))
        await conn.execute(
            sa.insert(pairs),
            [{"run_id": run_id, "src": s, "dst": "target", "expect": "closed"}
             for s in subnets],
        )  # fmt: skip
        await conn.execute(sa.insert(chunks).values(**held))

    return run_id


async def _seed(
    store: Store,
    run_id: str,
    made: _Maker,
    ready: asyncio.Queue[bytes],
    primed: tuple[asyncio.Event, int],
    total: int,
) -> None:
    """Keep ``AHEAD`` leased chunks ready, in blocks, as a run's budget would."""
    template = Assignment(
        id="x", run_id=run_id, src="s", dst="target", targets=("10.9.0.0/28",),
        tcp=((1, 65535),), udp=(), rate_pps=1000, passes=2,
        issued_at=time.time(), expires_at=time.time() + 3600,
    )  # fmt: skip
    body = codec.encode(template)
    subnets = list(made.keys)
    made_so_far = 0
    while made_so_far < total:
        if ready.qsize() >= AHEAD:
            await asyncio.sleep(0.2)
            continue
        rows = []
        for _ in range(min(SEED_BLOCK, total - made_so_far)):
            chunk = uuid.uuid4().hex
            rows.append({
                "id": chunk, "run_id": run_id, "src": random.choice(subnets),
                "dst": "target", "probes": 14 * 65539, "state": ChunkState.LEASED,
                "assignment": body, "budget_pps": 20_000, "rate_pps": 1250,
                "leased_at": time.time(),
            })  # fmt: skip
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(chunks), rows)
        for row in rows:
            ready.put_nowait(made.request(str(row["id"]), str(row["src"])))
            await asyncio.sleep(0)  # let the load run while topping up
        made_so_far += len(rows)
        if ready.qsize() >= primed[1]:
            primed[0].set()


async def _sample_rss(pid: int, load: Load) -> None:
    while True:
        load.rss_mb.append(_rss_mb(pid))
        await asyncio.sleep(SAMPLE_S)


def _cpu(coordinator: Coordinator) -> dict[str, float]:
    """CPU seconds used so far by the coordinator, the database and this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    used = {
        "coordinator": _tree_cpu_s(coordinator.pid),
        "agents": own.ru_utime + own.ru_stime,
    }
    if coordinator.db_pid is not None:
        used["postgres"] = _tree_cpu_s(coordinator.db_pid)

    return used


def _tree_cpu_s(root: int) -> float:
    """User and system CPU seconds of ``root`` and every live descendant."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone since the listing
            continue
        fields = text.rsplit(")", 1)[1].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    tree = {root}
    while grown := {p for p, up in parents.items() if up in tree} - tree:
        tree |= grown

    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

    return 0.0


async def _findings_total(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = (await reader.read()).decode()
    finally:
        writer.close()
    for line in text.splitlines():
        if line.startswith("segscan_findings_total "):
            return float(line.split()[1])

    return 0.0


def _print_load(load: Load, rate: int) -> None:
    latencies = sorted(load.latencies_s)
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = (
        latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    )
    rss = load.rss_mb or [0.0]
    print(
        f"  {load.backend:10} offered {rate:5}/s: "
        f"{load.posted / load.elapsed_s:6.0f} results/s "
        f"{load.findings / load.elapsed_s:9.0f} findings/s  "
        f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  failed {load.failed}  "
        f"coordinator RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (max {max(rss):.0f}) "
        f"over {load.elapsed_s:.0f} s"
    )
    cores = {k: v / load.elapsed_s for k, v in load.cpu_s.items()}
    per_post_ms = load.cpu_s["coordinator"] / max(1, load.posted) * 1000
    print(
        f"  {'':10} CPU cores busy: coordinator {cores['coordinator']:.2f} "
        f"({per_post_ms:.2f} ms per post), "
        + (f"postgres {cores['postgres']:.2f}, " if "postgres" in cores else "")
        + f"simulated agents {cores['agents']:.2f}"
    )


# --- plan and judge ----------------------------------------------------------


def _print_plan(subnets: int) -> None:
    done = subprocess.run(
        [sys.executable, __file__, "plan", "--subnets", str(subnets)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"plan and judge: {figures['subnets']} subnets in 10 segments, "
        f"{figures['pairs']} pairs, {figures['chunks']} chunks (SQLite)"
    )
    print(
        f"  plan {figures['plan_s']:.1f} s, judge {figures['judge_s']:.1f} s, "
        f"together {figures['plan_s'] + figures['judge_s']:.1f} s; "
        f"peak memory {figures['peak_mb']:.0f} MB"
    )


def policy_text(subnets: int, segments: int = 10) -> str:
    """A PCI-shaped estate: one CDE segment; every other segment must not reach
    it, and it may reach every other on 443 only."""
    per = subnets // segments
    lines = ["version: 1", "segments:"]
    for s in range(segments):
        name = "cde" if s == 0 else f"seg{s}"
        lines += [f"  {name}:", "    subnets:"]
        for i in range(per):
            n = s * per + i
            lines.append(f"      {name}-{i}: 10.{n // 256}.{n % 256}.0/28")
    lines.append("rules:")
    for s in range(1, segments):
        lines.append(f"  - {{from: seg{s}, to: cde, expect: closed}}")
        lines.append(f"  - {{from: cde, to: seg{s}, expect: open, tcp: [443]}}")
    lines.append("scan: {tcp: 1-65535, udp: [53, 123, 161, 500], rate: 20000}")

    return "\n".join(lines) + "\n"


async def plan_and_judge(subnets: int) -> dict[str, Any]:
    """Plan a run into SQLite, answer every chunk, judge it; times and memory."""
    import logging

    import structlog

    from coordinator.dispatch import Dispatcher, QueueConfig
    from coordinator.policy import parse_policy
    from coordinator.runs import RunManager
    from coordinator.store import Posted

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )

    class Null(Dispatcher):
        async def send(self, assignments: Any) -> None:
            return None

    with tempfile.TemporaryDirectory(prefix="segscan-plan-") as tmp:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp}/plan.db")
        manager = RunManager(store, Null(QueueConfig()))
        started = time.perf_counter()
        policy = parse_policy(policy_text(subnets), "bench.yaml")
        run = await manager.start(policy)
        plan_s = time.perf_counter() - started

        # Every chunk answered, as agents would (not timed); the bench keeps
        # no more of the chunks than it needs to answer them.
        query = sa.select(chunks.c.id, chunks.c.src, chunks.c.dst, chunks.c.probes)
        async with store.engine.connect() as conn:
            planned = (await conn.execute(query.where(chunks.c.run_id == run.id))).all()
        for first in range(0, len(planned), 5000):
            posts = []
            for chunk_id, src, dst, probes in planned[first : first + 5000]:
                r = Result(
                    chunk_id, run.id, src, dst, f"{src}@b", "syn", 1.0, 2.0,
                    Coverage(probes, probes, 0, 2), (),
                )  # fmt: skip
                posts.append(Posted(r, codec.encode(r)))
            await store.add_results(posts)
        del planned, posts

        started = time.perf_counter()
        judgements, verdict = await manager.judge(run, final=True)
        judge_s = time.perf_counter() - started
        counts = await store.chunk_counts(run.id)
        await store.close()

    return {
        "subnets": subnets,
        "pairs": len(judgements),
        "chunks": sum(counts.values()),
        "verdict": str(verdict),
        "plan_s": plan_s,
        "judge_s": judge_s,
        "peak_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory.

    From the kernel's high-water mark of its address space, not getrusage:
    ru_maxrss survives fork and exec, so a child of the benchmark would
    report the intake phases' peak as its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]

    return port


def _machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = "unknown CPU"

    return model


if __name__ == "__main__":
    sys.exit(main())
