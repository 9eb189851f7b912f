"""The ``coordinator`` command: serve, run, rescan, status, report, diff,
evidence, healthcheck.

Exit codes: 0 all pairs pass, 1 a violation, 2 usage or config error,
3 inconclusive.  Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from coordinator import csvout, diff, dot, evidence, html, logs, nmapxml, scopes, vault
from coordinator.changes import affected_pairs, load_network_map
from coordinator.client import Client, operator_token, service_url
from coordinator.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_USAGE,
    EXIT_VIOLATION,
    CoordinatorError,
    UsageError,
)
from coordinator.policy import load_policy
from coordinator.progress import ProgressBar
from coordinator.report import render_matrix, render_text

log = structlog.get_logger(__name__)

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
    serve.add_argument(
        "--evidence", default=None, help="bundle directory (SEGSCAN_EVIDENCE_DIR)"
    )
    serve.set_defaults(handler=_serve)

    run = _client_command(sub, "run", "plan and dispatch a run", _run)
    run.add_argument("--policy", required=True, type=Path, help="policy YAML file")
    run.add_argument("--wait", action="store_true", help="follow it to the verdict")
    run.add_argument(
        "--token", default=None, help="operator token (SEGSCAN_OPERATOR_TOKEN)"
    )

    rescan = _client_command(sub, "rescan", "rescan one subnet pair", _rescan)
    rescan.add_argument("--pair", help="SRC:DST subnet names")
    rescan.add_argument(
        "--change",
        help="a CloudTrail change event (JSON): rescan the pairs it can affect; "
        "needs --policy and --network",
    )
    rescan.add_argument("--policy", type=Path, help="policy YAML, with --change")
    rescan.add_argument("--network", type=Path, help="network map, with --change")
    rescan.add_argument(
        "--direction",
        choices=["both", "forward"],
        default="both",
        help="both directions (default) or only SRC -> DST",
    )
    rescan.add_argument("--run", default=None, help="base run (default: latest)")
    rescan.add_argument("--wait", action="store_true", help="follow it to the verdict")
    rescan.add_argument("--token", default=None, help="operator token")

    _client_command(sub, "status", "runs and agents", _status)

    report = _client_command(sub, "report", "a run's report", _report)
    report.add_argument("run", nargs="?", default="latest", help="run id or latest")
    report.add_argument("--format", choices=sorted(RENDERERS), default="text")
    report.add_argument(
        "-o", "--output", type=Path, help="write to FILE (xml: a directory)"
    )

    drift = _client_command(sub, "diff", "what changed between two runs", _diff)
    drift.add_argument("base", help="the earlier run")
    drift.add_argument("head", nargs="?", default="latest", help="the later run")

    bundle = sub.add_parser("evidence", help="evidence bundles").add_subparsers(
        dest="action", required=True
    )
    check = bundle.add_parser("verify", help="check a bundle's signature and files")
    check.add_argument("bundle", help="bundle directory or s3://BUCKET/PREFIX")
    check.add_argument("--key", type=Path, help="the coordinator's public key (PEM)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(handler=_verify)
    fetch = _client_command(bundle, "fetch", "download a run's bundle", _fetch)
    fetch.add_argument("run", nargs="?", default="latest", help="run id or latest")
    fetch.add_argument("-o", "--output", type=Path, required=True, help="directory")

    _client_command(sub, "healthcheck", "exit 0 when the service is healthy", _health)
    scopes.add_commands(sub)

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

    await serve(args.listen, args.db, args.evidence)

    return EXIT_PASS


async def _run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    client = Client(service_url(args.url), operator_token(args.token))
    reply = await client.post(
        "/v1/runs", {"policy": policy.text, "source": str(args.policy)}
    )

    return await _started(client, reply["run"], args)


async def _rescan(args: argparse.Namespace) -> int:
    if (args.pair is None) == (args.change is None):
        raise UsageError("rescan", "give either --pair SRC:DST or --change EVENT")
    body: dict[str, Any] = {"base_run": args.run}
    if args.change is not None:
        wanted = _changed_pairs(args)
        if not wanted:
            return EXIT_PASS
        body["pairs"] = wanted
    else:
        src, sep, dst = args.pair.partition(":")
        if not sep or not src or not dst:
            raise UsageError(args.pair, "--pair takes SRC:DST, two subnet names")
        body |= {"src": src, "dst": dst, "direction": args.direction}
    client = Client(service_url(args.url), operator_token(args.token))
    reply = await client.post("/v1/rescans", body)

    return await _started(client, reply["run"], args)


def _changed_pairs(args: argparse.Namespace) -> list[list[str]]:
    """The directed pairs a change to the segmentation controls can affect."""
    if args.policy is None or args.network is None:
        raise UsageError("--change", "needs --policy FILE and --network FILE")
    try:
        event = json.loads(args.change)
    except ValueError as exc:
        raise UsageError("--change", f"not JSON: {exc}") from exc
    policy = load_policy(args.policy)
    impact = affected_pairs(event, load_network_map(args.network, policy), policy)
    log.info(
        "change_impact",
        change=impact.event,
        pairs=len(impact.pairs),
        reason=impact.reason,
    )

    return [[pair.src, pair.dst] for pair in impact.pairs]


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
    bar = ProgressBar(sys.stderr)
    while True:
        figures = await client.get(f"/v1/runs/{run_id}/live")
        if figures["finished"]:
            break
        bar.update(figures)
        await asyncio.sleep(POLL_S)
    bar.finish(figures)


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
        silent = "  SILENT" if agent.get("silent") else ""
        print(
            f"  agent {agent['subnet']:12} {agent['agent']:32} "
            f"seen {agent['last_seen_s_ago']}s ago{silent}"
        )

    return EXIT_PASS


async def _report(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    report = await client.get(f"/v1/runs/{args.run}/report")
    fmt = "json" if args.json else args.format
    if fmt == "xml":
        _write_xml(report, args.output)
    elif args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(RENDERERS[fmt](report), encoding="utf-8")
    else:
        sys.stdout.write(RENDERERS[fmt](report))

    return VERDICT_EXIT.get(report["verdict"], EXIT_INCONCLUSIVE)


def _json_text(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2) + "\n"


def _plain_text(report: dict[str, Any]) -> str:
    return render_text(report) + "\n"


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "json": _json_text,
    "text": _plain_text,
    "html": html.render,
    "csv": csvout.render,
    "dot": dot.render,
    "xml": _json_text,  # unused: xml is one file per source subnet, _write_xml
}


def _write_xml(report: dict[str, Any], directory: Path | None) -> None:
    if directory is None:
        raise UsageError("--format xml", "needs -o DIRECTORY: one file per source")
    directory.mkdir(parents=True, exist_ok=True)
    for src, text in nmapxml.render_all(report).items():
        (directory / f"{src}.xml").write_text(text, encoding="utf-8")


async def _diff(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    base = await client.get(f"/v1/runs/{args.base}/report")
    head = await client.get(f"/v1/runs/{args.head}/report")
    drift = diff.compare(base, head)
    _emit(args, drift.as_dict(), diff.render_text(drift))

    return EXIT_VIOLATION if drift.new_reachability else EXIT_PASS


async def _verify(args: argparse.Namespace) -> int:
    if args.bundle.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="segscan-evidence-") as tmp:
            local = await vault.download(args.bundle, Path(tmp))
            outcome = evidence.verify_bundle(local, args.key)
    else:
        outcome = await asyncio.to_thread(_verify_local, Path(args.bundle), args.key)
    if outcome.key_from_bundle:
        print(
            "coordinator: warning: checked with the key inside the bundle, which "
            "proves integrity, not origin; pass --key PUB for that",
            file=sys.stderr,
        )
    text = f"{args.bundle}: {'ok' if outcome.ok else 'FAILED'}, {outcome.files} files"
    text += "".join(f"\n  {problem}" for problem in outcome.problems)
    data = {"ok": outcome.ok, "files": outcome.files, "key_id": outcome.key_id}
    _emit(args, data | {"problems": list(outcome.problems)}, text)

    return EXIT_PASS if outcome.ok else EXIT_VIOLATION


def _verify_local(bundle: Path, key: Path | None) -> evidence.Verification:
    if not bundle.is_dir():
        raise UsageError(str(bundle), "no such bundle directory")

    return evidence.verify_bundle(bundle, key)


async def _fetch(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    run = (await client.get(f"/v1/runs/{args.run}"))["run"]
    reply = await client.get(f"/v1/runs/{run}/evidence")
    files = {path: base64.b64decode(data) for path, data in reply["files"].items()}
    await asyncio.to_thread(vault.write_tree, args.output, files)
    _emit(args, {"run": run, "bundle": str(args.output)}, f"{run}: {args.output}")

    return EXIT_PASS


async def _health(args: argparse.Namespace) -> int:
    client = Client(service_url(args.url))
    reply = await client.get("/healthz")
    _emit(args, reply, f"{client.url}: {reply.get('status')}")

    return EXIT_PASS if reply.get("status") == "ok" else EXIT_INCONCLUSIVE


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text)


__all__ = ["EXIT_USAGE", "main", "render_matrix"]
