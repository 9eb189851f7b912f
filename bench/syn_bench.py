"""Benchmark: segscan's SYN engine against nmap and masscan, side by side.

Builds its own two-namespace lab (``benchlab``), then scans the same /28 on
the same ports with every tool, with 0 % and 5 % loss each way, and prints one
table: wall time, probes per second, recall and false positives.  Recall is
over open ports (what every tool reports) and over every reachable answer
(open or closed: the answers that prove a path).  nmap runs once per loss
level, capped by ``--nmap-timeout``; a capped run is shown as a lower bound.

    .venv/bin/python bench/syn_bench.py [--repeats N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import benchlab
from benchlab import SCANNER_DEV, SCANNER_NS, TARGETS

REPO = Path(__file__).resolve().parents[1]
Answer = tuple[str, int, str]  # ip, port, "open" | "closed"

_SEGSCAN = """
import asyncio, json, resource, sys
from ipaddress import IPv4Network
from agent.engine import ScanRequest
from agent.syn import SynEngine
from protocol.ports import expand, parse_ports
args = json.loads(sys.argv[1])
request = ScanRequest(
    targets=tuple(IPv4Network(args["targets"])), tcp=parse_ports(args["ports"]),
    rate_pps=args["rate"], passes=args["passes"], timeout_s=1.0,
)
outcome = asyncio.run(SynEngine().scan(request))
answers = [
    (f.ip, port, str(f.state)) for f in outcome.findings
    if str(f.state) in ("open", "closed") for port in expand(f.ports)
]
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"answers": answers, "accounting": outcome.accounting.as_dict(),
                  "peak_mb": peak_mb}))
"""


@dataclass(frozen=True)
class Run:
    """One run of one tool."""

    wall_s: float
    answers: frozenset[Answer]
    send_pps: float | None = None
    finished: bool = True


@dataclass(frozen=True)
class Config:
    """A tool with its settings, as one row of the table."""

    tool: str
    settings: str
    run: Callable[[benchlab.Lab, str], Run]
    repeats: int | None = None  # None: the benchmark's --repeats


def truth(ports: range) -> frozenset[Answer]:
    """What a perfect scanner reports as open or closed."""
    out: set[Answer] = set()
    for host in TARGETS:
        ip = str(host)
        for port in ports:
            if (ip, port) in benchlab.LISTENERS:
                out.add((ip, port, "open"))
            elif port in benchlab.ACCEPTED or port in benchlab.RESET:
                out.add((ip, port, "closed"))

    return frozenset(out)


def _timed(argv: list[str], timeout_s: float) -> tuple[float, bool, str]:
    pinned = ["taskset", "-c", "0", "ip", "netns", "exec", SCANNER_NS, *argv]
    started = time.monotonic()
    try:
        done = subprocess.run(
            pinned, capture_output=True, text=True, timeout=timeout_s, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, False, ""
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()[-400:]}")

    return time.monotonic() - started, True, done.stdout


def segscan(rate: int, passes: int) -> Callable[[benchlab.Lab, str], Run]:
    def run(lab: benchlab.Lab, ports: str) -> Run:
        args = {"targets": str(TARGETS), "ports": ports, "rate": rate, "passes": passes}
        argv = [sys.executable, "-c", _SEGSCAN, json.dumps(args)]
        wall_s, _, out = _timed(argv, 600)
        printed = json.loads(out.splitlines()[-1])
        answers = frozenset((ip, port, state) for ip, port, state in printed["answers"])

        return Run(wall_s, answers, printed["accounting"]["rate_pps"])

    return run


def masscan(rate: int, retries: int) -> Callable[[benchlab.Lab, str], Run]:
    def run(lab: benchlab.Lab, ports: str) -> Run:
        with tempfile.NamedTemporaryFile(suffix=".txt") as out:
            argv = [
                "masscan",
                str(TARGETS),
                f"-p{ports}",
                "--rate",
                str(rate),
                "--retries",
                str(retries),
                "--wait",
                "1",
                "--interface",
                SCANNER_DEV,
                "--router-mac",
                lab.router_mac,
                "--show",
                "closed",
                "-oL",
                out.name,
            ]
            with lab.heartbeat(lifetime_s=600):
                wall_s, _, _ = _timed(argv, 600)
            lines = Path(out.name).read_text().splitlines()
        answers = frozenset(
            (ip, int(port), state)
            for state, _proto, port, ip, _ts in (
                line.split() for line in lines if not line.startswith("#")
            )
            if state in ("open", "closed")
        )

        return Run(wall_s, answers)

    return run


def nmap(timeout_s: float) -> Callable[[benchlab.Lab, str], Run]:
    def run(lab: benchlab.Lab, ports: str) -> Run:
        with tempfile.NamedTemporaryFile(suffix=".xml") as out:
            argv = [
                "nmap",
                "-sS",
                "-T4",
                f"-p{ports}",
                "-n",
                "-Pn",
                "--reason",
                "-oX",
                out.name,
                str(TARGETS),
            ]
            wall_s, finished, _ = _timed(argv, timeout_s)
            answers = _nmap_answers(out.name) if finished else frozenset()

        return Run(wall_s, answers, finished=finished)

    return run


def _nmap_answers(path: str) -> frozenset[Answer]:
    out: set[Answer] = set()
    for host in ET.parse(path).getroot().iter("host"):
        address = host.find("address")
        assert address is not None
        ip = address.get("addr", "")
        for port in host.iter("port"):
            state = port.find("state")
            if state is not None and state.get("state") in ("open", "closed"):
                out.add((ip, int(port.get("portid", "0")), state.get("state", "")))
        for extra in host.iter("extraports"):
            if extra.get("state") in ("open", "closed"):
                for reason in extra.iter("extrareasons"):
                    for number in _expand(reason.get("ports", "")):
                        out.add((ip, number, extra.get("state", "")))

    return frozenset(out)


def _expand(text: str) -> Iterable[int]:
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield from range(int(first), int(last or first) + 1)


def configs(args: argparse.Namespace) -> dict[float, list[Config]]:
    """The rows to run at each loss level."""
    full, single = "max (1M)", 1
    return {
        0.0: [
            Config("segscan", f"rate {full}, passes 1", segscan(1_000_000, 1)),
            Config("segscan", f"rate {full}, passes 2", segscan(1_000_000, 2)),
            Config("segscan", "rate 300k, passes 1", segscan(300_000, 1)),
            Config("masscan", "rate 100k, retries 0", masscan(100_000, 0)),
            Config("masscan", "rate 300k, retries 0", masscan(300_000, 0)),
            Config("masscan", "rate 1M, retries 0", masscan(1_000_000, 0)),
            Config("nmap", "-sS -T4", nmap(args.nmap_timeout), single),
        ],
        0.05: [
            Config("segscan", f"rate {full}, passes 3", segscan(1_000_000, 3)),
            Config("segscan", f"rate {full}, passes 4", segscan(1_000_000, 4)),
            Config("segscan", f"rate {full}, passes 2", segscan(1_000_000, 2)),
            Config("masscan", "rate 1M, retries 0", masscan(1_000_000, 0)),
            Config("masscan", "rate 300k, retries 1", masscan(300_000, 1)),
            Config("masscan", "rate 300k, retries 2", masscan(300_000, 2)),
            Config("masscan", "rate 1M, retries 2", masscan(1_000_000, 2)),
            Config("nmap", "-sS -T4", nmap(args.nmap_timeout), single),
        ],
    }


def row(
    config: Config, loss: float, runs: list[Run], want: frozenset[Answer], probes: int
) -> list[str]:
    """One line of the table from a config's runs."""
    done = [r for r in runs if r.finished]
    walls = [r.wall_s for r in runs]
    wall = f"{statistics.median(walls):.1f}"
    if len(runs) > 1:
        wall += f" ({min(walls):.1f}-{max(walls):.1f})"
    if not done:
        wall = f">{max(walls):.0f} (cut)"
    opens = {a for a in want if a[2] == "open"}
    found_open = sum(len(r.answers & opens) for r in done)
    found_all = sum(len(r.answers & want) for r in done)
    wrong = sum(len(r.answers - want) for r in done)
    rates = [r.send_pps for r in done if r.send_pps]

    return [
        config.tool,
        config.settings,
        f"{loss:.0%}",
        str(len(runs)),
        wall,
        f"{probes / statistics.median(walls):,.0f}",
        f"{statistics.median(rates):,.0f}" if rates else "-",
        _pct(found_open, len(opens) * len(done)),
        _pct(found_all, len(want) * len(done)),
        str(wrong),
    ]


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def print_table(rows: list[list[str]]) -> None:
    header = [
        "tool",
        "settings",
        "loss",
        "runs",
        "wall s (min-max)",
        "probes/s",
        "send pps",
        "recall open",
        "recall reachable",
        "false pos",
    ]
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))


def memory_check(lab: benchlab.Lab) -> str:
    """Peak memory of one agent scanning a 256-address x 65,535-port chunk."""
    args = {
        "targets": str(benchlab.SILENT),
        "ports": "1-65535",
        "rate": 1_000_000,
        "passes": 1,
    }
    argv = [sys.executable, "-c", _SEGSCAN, json.dumps(args)]
    wall_s, _, out = _timed(argv, 900)
    printed = json.loads(out.splitlines()[-1])
    accounting = printed["accounting"]

    return (
        f"memory: 256 x 65,535 probes ({accounting['sent']:,} sent) in {wall_s:.1f} s "
        f"at {accounting['rate_pps']:,} pps, peak RSS {printed['peak_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="ports 1-5000, 1 repeat")
    parser.add_argument("--nmap-timeout", type=float, default=1200.0, metavar="S")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    ports = range(1, 5001) if args.quick else range(1, 65536)
    spec = f"{ports.start}-{ports.stop - 1}"
    want = truth(ports)
    probes = len(ports) * TARGETS.num_addresses
    rows: list[list[str]] = []
    started = time.monotonic()
    with benchlab.lab(lifetime_s=4 * 3600) as lab:
        for loss, entries in configs(args).items():
            lab.set_loss(loss)
            for config in entries:
                runs = [config.run(lab, spec) for _ in range(config.repeats or repeats)]
                rows.append(row(config, loss, runs, want, probes))
                print(" ".join(rows[-1]), file=sys.stderr, flush=True)
        lab.set_loss(0.0)
        memory = None if args.quick else memory_check(lab)
    print(
        f"{TARGETS} x ports {spec}: {probes:,} probes per run; truth {len(want)} "
        f"reachable ({sum(a[2] == 'open' for a in want)} open)"
    )
    print_table(rows)
    if memory:
        print(memory)
    print(f"benchmark took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
