"""``segscan-lab``: bring the local lab up, take it down, show how it is.

    segscan-lab up [SPEC] [--network-only]   build and start (default: founding case)
    segscan-lab down                         remove everything the lab made
    segscan-lab status [--json]              endpoints, namespaces and processes

Exit codes: 0 done, 2 usage or lab error (one line, no traceback), 3 ``status``
found a lab process dead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from deploy.lab import lab
from deploy.lab.errors import LabError, ServiceError
from deploy.lab.logconfig import configure_logging
from deploy.lab.services import COORDINATOR, MOTO, ControlPlane
from deploy.lab.spec import load_spec
from deploy.lab.state import DEFAULT_STATE_DIR, read_state, state_path
from deploy.lab.supervisor import SUPERVISOR
from deploy.lab.topology import agent_name, workload_name

FOUNDING_SPEC = Path(__file__).parent / "founding" / "lab.yaml"
EXIT_OK = 0
EXIT_ERROR = 2
EXIT_DEGRADED = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``segscan-lab`` command and return its exit code."""
    args = _parser().parse_args(argv)
    configure_logging()
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except LabError as exc:
        hint = ""
        left_up = read_state(DEFAULT_STATE_DIR) is not None
        if command is _up and isinstance(exc, ServiceError) and left_up:
            hint = " (the lab stays up for a look; `segscan-lab down` removes it)"
        print(f"segscan-lab: {exc}{hint}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "segscan-lab: interrupted; `segscan-lab down` removes what was built",
            file=sys.stderr,
        )
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segscan-lab", description="The local segscan lab on network namespaces."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="build the lab and start its processes")
    up.add_argument(
        "spec", nargs="?", default=FOUNDING_SPEC, type=Path, help="lab spec (YAML)"
    )
    up.add_argument(
        "--network-only",
        action="store_true",
        help="build the network and workloads; start no SQS, coordinator or agents",
    )
    up.set_defaults(command=_up)
    down = commands.add_parser("down", help="remove everything the lab made")
    down.set_defaults(command=_down)
    status = commands.add_parser("status", help="show endpoints and processes")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(command=_status)

    return parser


def _up(args: argparse.Namespace) -> int:
    lab.require_root()
    spec = load_spec(args.spec)
    control = None if args.network_only else ControlPlane.default(DEFAULT_STATE_DIR)
    state = lab.up(spec, control=control)
    print(
        f"lab up: {len(state.subnets)} subnets, {len(state.hosts)} workloads "
        f"(state {state_path(DEFAULT_STATE_DIR)})"
    )
    print(f"  sqs          {state.sqs_endpoint or 'not started (network only)'}")
    print(f"  coordinator  {state.coordinator_url or 'not started (network only)'}")

    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    removed = lab.down()
    if not (removed.processes or removed.namespaces or removed.links):
        print("lab down: nothing to remove")
    else:
        print(
            f"lab down: ended {removed.processes} processes, removed "
            f"{removed.namespaces} namespaces and {removed.links} links"
        )

    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    status = lab.status()
    if args.json:
        print(json.dumps(_status_json(status), indent=2))
    else:
        print("\n".join(_status_lines(status)))

    return EXIT_OK if status.healthy else EXIT_DEGRADED


def _status_json(status: lab.Status) -> dict[str, object]:
    data: dict[str, object] = msgspec.to_builtins(status.state)
    data["alive"] = status.alive
    data["healthy"] = status.healthy

    return data


def _status_lines(status: lab.Status) -> list[str]:
    state = status.state
    lines = [
        f"lab up since {state.started_at} (spec {state.spec})",
        f"sqs          {state.sqs_endpoint or '-'}  {_process(status, MOTO)}",
        f"coordinator  {state.coordinator_url or '-'}  {_process(status, COORDINATOR)}",
        f"supervisor   {_process(status, SUPERVISOR)}",
        "",
    ]

    return [*lines, *_subnet_table(status), "", *_workload_table(status)]


def _subnet_table(status: lab.Status) -> list[str]:
    rows = [["SUBNET", "VPC", "CIDR", "NAMESPACE", "AGENT IP", "AGENT PID", "ALIVE"]]
    rows[0].append("STARTS")
    for name, subnet in status.state.subnets.items():
        pid = str(subnet.agent_pid or "-")
        row = [name, subnet.vpc, subnet.cidr, subnet.namespace, subnet.agent_ip]
        rows.append([*row, pid, *_liveness(status, agent_name(name))])

    return _table(rows)


def _workload_table(status: lab.Status) -> list[str]:
    rows = [["WORKLOAD", "NAMESPACE", "TCP", "UDP", "ALIVE", "STARTS"]]
    for ip, host in status.state.hosts.items():
        row = [ip, host.namespace, host.tcp or "-", host.udp or "-"]
        rows.append([*row, *_liveness(status, workload_name(ip))])

    return _table(rows)


def _liveness(status: lab.Status, name: str) -> list[str]:
    """ALIVE and STARTS of process ``name``; dashes when the lab never ran it."""
    service = status.state.services.get(name)
    if service is None:
        return ["-", "-"]

    return ["yes" if status.alive.get(name) else "NO", str(service.starts)]


def _process(status: lab.Status, name: str) -> str:
    if name == SUPERVISOR:
        pid = status.state.pids.get(name)
    else:
        service = status.state.services.get(name)
        if service is None:
            return "not started"
        pid = service.pid
    state = "alive" if status.alive.get(name) else "dead"

    return f"pid {pid or '-'} {state}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


if __name__ == "__main__":
    sys.exit(main())
