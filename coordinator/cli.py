"""The ``coordinator`` command: serve, run, rescan, status, report, healthcheck.

Exit codes: 0 all pairs pass, 1 a violation, 2 usage or config error,
3 inconclusive.  Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinator import logs
from coordinator.client import Client, service_url
from coordinator.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_USAGE,
    EXIT_VIOLATION,
    CoordinatorError,
    UsageError,
)
from coordinator.policy import load_policy
from coordinator.report import render_matrix, render_text

VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_VIOLATION}
POLL_S = 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coordinator`` console script."""
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        return int(asyncio.run(args.handler(args)))
    except CoordinatorError as exc:
        print(f"coordinator: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INCONCLUSIVE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coordinator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--listen", default="127.0.0.1:8470", help="HOST:PORT")
    serve.add_argument("--db", default=None, help="database URL (SEGSCAN_DB_URL)")
    serve.set_defaults(handler=_serve)

    run = _client_command(sub, "run", "plan and dispatch a run", _run)
    run.add_argument("--policy", required=True, type=Path, help="policy YAML file")
    run.add_argument("--wait", action="store_true", help="follow it to the verdict")

    rescan = _client_command(sub, "rescan", "rescan one subnet pair", _rescan)
    rescan.add_argument("--pair", required=True, help="SRC:DST subnet names")
    rescan.add_argument(
        "--direction",
        choices=["both", "forward"],
        default="both",
        help="both directions (default) or only SRC -> DST",
    )
    rescan.add_argument("--run", default=None, help="base run (default: latest)")
    rescan.add_argument("--wait", action="store_true", help="follow it to the verdict")

    _client_command(sub, "status", "runs and agents", _status)

    report = _client_command(sub, "report", "a run's report", _report)
    report.add_argument("run", nargs="?", default="latest", help="run id or latest")
    report.add_argument("--format", choices=["json", "text"], default="text")
    report.add_argument("-o", "--output", type=Path, help="write to FILE")

    _client_command(sub, "healthcheck", "exit 0 when the service is healthy", _health)

    return parser


def _client_command(
    sub: Any, name: str, help_text: str, handler: Any
) -> argparse.ArgumentParser:
    cmd: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    cmd.add_argument("--url", default=None, help="coordinator URL")
    cmd.add_argument("--json", action="store_true", help="print JSON")
    cmd.set_defaults(handler=handler)

    return cmd


async def _serve(args: argparse.Namespace) -> int:
    from coordinator.server import serve

    await serve(args.listen, args.db)

    return EXIT_PASS


async def _run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    client = Client(service_url(args.url))
    reply = await client.post(
        "/v1/runs", {"policy": policy.text, "source": str(args.policy)}
    )

    return await _started(client, reply["run"], args)


async def _rescan(args: argparse.Namespace) -> int:
    src, sep, dst = args.pair.partition(":")
    if not sep or not src or not dst:
        raise UsageError(args.pair, "--pair takes SRC:DST, two subnet names")
    client = Client(service_url(args.url))
    body = {"src": src, "dst": dst, "direction": args.direction, "base_run": args.run}
    reply = await client.post("/v1/rescans", body)

    return await _started(client, reply["run"], args)


async def _started(client: Client, run_id: str, args: argparse.Namespace) -> int:
    if not args.wait:
        _emit(args, {"run": run_id}, f"started run {run_id}")
        return EXIT_PASS
    await _follow(client, run_id)
    report = await client.get(f"/v1/runs/{run_id}/report")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))

    return VERDICT_EXIT.get(report["verdict"], EXIT_INCONCLUSIVE)


async def _follow(client: Client, run_id: str) -> None:
    tty = sys.stderr.isatty()
    started = time.monotonic()
    while True:
        progress = await client.get(f"/v1/runs/{run_id}")
        if tty:
            elapsed = time.monotonic() - started
            sys.stderr.write(
                f"\rrun {run_id}: {progress['chunks_done']}/{progress['chunks']} "
                f"chunks, {elapsed:.0f}s"
            )
            sys.stderr.flush()
        if progress["finished"]:
            break
        await asyncio.sleep(POLL_S)
    if tty:
        sys.stderr.write("\n")


async def _status(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    runs = await client.get("/v1/runs")
    agents = await client.get("/v1/agents")
    if args.json:
        print(json.dumps({"runs": runs[:10], "agents": agents}, indent=2))
        return EXIT_PASS
    print(f"coordinator {client.url}")
    for run in runs[:10]:
        state = run["verdict"] or "running"
        print(f"  run {run['run']:24} {run['kind']:7} {state}")
    for agent in sorted(agents, key=lambda a: a["subnet"]):
        print(
            f"  agent {agent['subnet']:12} {agent['agent']:32} "
            f"seen {agent['last_seen_s_ago']}s ago"
        )

    return EXIT_PASS


async def _report(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    report = await client.get(f"/v1/runs/{args.run}/report")
    as_json = args.json or args.format == "json"
    text = json.dumps(report, indent=2) if as_json else render_text(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)

    return VERDICT_EXIT.get(report["verdict"], EXIT_INCONCLUSIVE)


async def _health(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    reply = await client.get("/healthz")
    _emit(args, reply, f"{client.url}: {reply.get('status')}")

    return EXIT_PASS if reply.get("status") == "ok" else EXIT_INCONCLUSIVE


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text)


__all__ = ["EXIT_USAGE", "main", "render_matrix"]
