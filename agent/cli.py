"""The ``agent`` command: ``run`` (the service), ``scan`` (one local scan), ``check``.

``agent run`` runs only signed assignments inside the approved scope
(agent/verify.py); ``agent scope verify`` checks a scope file as the agent
would.  ``agent scan`` is a tool for a person at the agent's own shell, who
answers for what it is pointed at: the scope guards what arrives from the
queue, not the host's operator.  Every error is one line on stderr with the documented
exit code: 2 for usage and configuration, 3 when a dependency is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, NoReturn

import msgspec
import structlog

from agent.config import AgentConfig
from agent.engine import ScanOutcome, ScanRequest
from agent.engines import choose_engine, raw_sockets_available
from agent.errors import EXIT_INCONCLUSIVE, EXIT_OK, AgentError, ConfigError
from agent.identity import DEFAULT_NETWORK_MAP, AgentIdentityError, resolve_subnet
from agent.queue import AssignmentQueue
from agent.runner import expand_targets, serve
from agent.scope import verify_file
from agent.sender import Health, Sender
from agent.syn import SynOutcome
from protocol.messages import ScanKind
from protocol.ports import PortRanges, format_ports, parse_ports
from protocol.scope import describe

MAX_CLOCK_SKEW_S = 10.0  # assignments expire within minutes; seconds matter


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``agent`` command; return its exit code."""
    args = _parser().parse_args(argv)
    _configure_logging()
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.command
    try:
        return asyncio.run(command(args))
    except AgentError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130  # the shell's code for "stopped by SIGINT"


async def _run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if not env.get("SEGSCAN_SUBNET", "").strip():
        # One image serves every subnet: on EC2 the agent asks where it is.
        env["SEGSCAN_SUBNET"] = await _own_subnet()
    config = AgentConfig.from_env(env)
    if args.allow_root:
        config = dataclasses.replace(config, allow_root=True)
    await serve(config)

    return EXIT_OK


async def _own_subnet() -> str:
    network_map = os.environ.get("SEGSCAN_NETWORK_MAP") or DEFAULT_NETWORK_MAP
    try:
        return await resolve_subnet(network_map)
    except AgentIdentityError as exc:
        raise ConfigError(
            "SEGSCAN_SUBNET", f"not set, and the metadata service could not tell: {exc}"
        ) from exc


async def _scope_verify(args: argparse.Namespace) -> int:
    scope = verify_file(args.scope, args.key)
    print(f"{args.scope}: signature ok")
    for line in describe(scope):
        print(f"  {line}")

    return EXIT_OK


async def _scan(args: argparse.Namespace) -> int:
    request = ScanRequest(
        targets=args.targets,
        tcp=args.ports,
        udp=args.udp,
        rate_pps=args.rate,
        passes=args.passes,
        timeout_s=args.timeout,
    )
    engine = choose_engine(ScanKind(args.engine), request.targets)
    outcome = await engine.scan(request)
    print(_outcome_json(outcome) if args.json else _outcome_table(outcome))

    return EXIT_OK


# --- agent check -----------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One thing ``agent check`` looked at."""

    name: str
    ok: bool
    detail: str


async def run_checks(config: AgentConfig) -> list[Check]:
    """Whether this agent can do its job: engine, queue, coordinator, clock."""
    checks = [_engine_check(config), await _queue_check(config)]
    try:
        async with Sender(config.coordinator_url, timeout_s=10) as sender:
            health = await sender.health()
    except AgentError as exc:
        return [*checks, Check("coordinator", False, str(exc))]
    coordinator = Check(
        "coordinator", health.status == "ok", f"healthz {health.status!r}"
    )

    return [*checks, coordinator, _clock_check(health)]


async def _check(args: argparse.Namespace) -> int:
    checks = await run_checks(AgentConfig.from_env())
    ok = all(check.ok for check in checks)
    if args.json:
        capabilities = {"raw_sockets": raw_sockets_available(), "root": _is_root()}
        report = {"ok": ok, "checks": checks, "capabilities": capabilities}
        print(msgspec.json.encode(report).decode())
    else:
        for check in checks:
            print(f"{'ok' if check.ok else 'FAIL':<5} {check.name:<12} {check.detail}")

    return EXIT_OK if ok else EXIT_INCONCLUSIVE


def _engine_check(config: AgentConfig) -> Check:
    capabilities = (
        f"raw sockets: {'yes' if raw_sockets_available() else 'no'}, "
        f"root: {'yes' if _is_root() else 'no'}"
    )
    try:
        engine = choose_engine(config.engine)
    except AgentError as exc:
        return Check("engine", False, f"{exc} ({capabilities})")

    return Check("engine", True, f"{config.engine} -> {engine.name} ({capabilities})")


async def _queue_check(config: AgentConfig) -> Check:
    try:
        async with AssignmentQueue.from_config(config) as queue:
            where = queue.endpoint or f"SQS in {queue.region}"
            return Check("queue", True, f"{queue.name} at {where}")
    except AgentError as exc:
        return Check("queue", False, str(exc))


def _clock_check(health: Health) -> Check:
    """Assignments carry expiry times: the agent's clock must agree."""
    if health.server_time is None:
        return Check("clock", False, "the coordinator sent no Date header")
    skew_s = time.time() - health.server_time
    detail = f"{skew_s:+.0f} s against the coordinator (limit {MAX_CLOCK_SKEW_S:.0f} s)"

    return Check("clock", abs(skew_s) <= MAX_CLOCK_SKEW_S, detail)


def _is_root() -> bool:
    return os.geteuid() == 0


# --- output ----------------------------------------------------------------


def _outcome_json(outcome: ScanOutcome) -> str:
    """One object: ``engine``, ``findings`` in the report's shape, ``accounting``.

    The SYN engine's accounting (rate achieved, kernel drop counters, frames,
    rejected replies) is richer than the coverage every engine reports.
    """
    accounting: object = outcome.coverage
    if isinstance(outcome, SynOutcome):
        accounting = outcome.accounting.as_dict()
    report = {
        "engine": outcome.engine,
        "findings": outcome.findings,
        "accounting": accounting,
    }
    return msgspec.json.encode(report).decode()


def _outcome_table(outcome: ScanOutcome) -> str:
    rows = [("IP", "PROTO", "PORTS", "STATE", "REASON")]
    rows += [
        (f.ip, f.proto, format_ports(f.ports), f.state, f.reason)
        for f in outcome.findings
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    if not outcome.findings:
        lines = ["no findings"]
    c = outcome.coverage
    lines.append(
        f"{outcome.engine}: planned {c.planned}, sent {c.sent}, "
        f"answered {c.answered}, passes {c.passes}, dropped {c.dropped}"
    )

    return "\n".join(line.rstrip() for line in lines)


# --- arguments and logging -------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line, exit 2, as every segscan command does."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agent", description="The segscan agent.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="serve this subnet's assignments")
    run.add_argument(
        "--allow-root",
        action="store_true",
        help="run as root anyway (SEGSCAN_ALLOW_ROOT=1); it needs only CAP_NET_RAW",
    )
    run.set_defaults(command=_run)

    scope = commands.add_parser("scope", help="approved scope files")
    scope_commands = scope.add_subparsers(required=True, metavar="COMMAND")
    verify = scope_commands.add_parser(
        "verify", help="check a scope file's signature and contents"
    )
    verify.add_argument("scope", type=Path, metavar="SCOPE", help="scope YAML file")
    verify.add_argument(
        "--key", type=Path, required=True, help="the scope owner's public key (PEM)"
    )
    verify.set_defaults(command=_scope_verify)

    scan = commands.add_parser(
        "scan",
        help="scan from here, once",
        description="Scan from this host, once.  The approved scope guards "
        "assignments, not this command: it probes whatever it is given, so give "
        "it only what you may scan.",
    )
    scan.add_argument(
        "targets", metavar="TARGETS", type=_targets, help="IPs/CIDRs, comma-separated"
    )
    scan.add_argument(
        "-p",
        "--ports",
        required=True,
        type=_ports,
        metavar="PORTS",
        help="TCP ports: 22,443,8000-8100",
    )
    scan.add_argument(
        "--udp", type=_ports, default=(), metavar="PORTS", help="UDP ports, likewise"
    )
    scan.add_argument("--rate", type=_positive(int), default=1000, metavar="PPS")
    scan.add_argument("--passes", type=_positive(int), default=2, metavar="N")
    scan.add_argument(
        "--timeout", type=_positive(float), default=1.0, metavar="S", help="per probe"
    )
    scan.add_argument("--engine", choices=[str(k) for k in ScanKind], default="auto")
    scan.add_argument("--json", action="store_true", help="print one JSON object")
    scan.set_defaults(command=_scan)

    check = commands.add_parser("check", help="can this agent work?")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(command=_check)

    return parser


def _targets(value: str) -> tuple[IPv4Address, ...]:
    try:
        targets = expand_targets(part for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not targets:
        raise argparse.ArgumentTypeError(f"no addresses in {value!r}")

    return targets


def _ports(value: str) -> PortRanges:
    try:
        return parse_ports(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(kind: Callable[[str], int | float]) -> Callable[[str], int | float]:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} must be positive")
        return number

    return parse


def _configure_logging() -> None:
    """structlog to stderr: a console layout on a terminal, JSON lines elsewhere."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if sys.stderr.isatty():
        processors.append(structlog.dev.ConsoleRenderer())
    else:
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
