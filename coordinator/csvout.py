"""The findings of a report as CSV: one row per finding, with its pair and verdict."""

from __future__ import annotations

import csv
import io
from typing import Any

from protocol.ports import format_ports

COLUMNS = (
    "run",
    "src",
    "dst",
    "expect",
    "verdict",
    "ip",
    "proto",
    "ports",
    "state",
    "reason",
    "ttl",
    "agent",
    "seen_at",
)


def render(report: dict[str, Any]) -> str:
    """Every finding of every pair, in the report's pair order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for pair in report["pairs"]:
        for f in pair["findings"]:
            ports = format_ports(tuple((a, b) for a, b in f["ports"]))
            writer.writerow(
                (
                    report["run"],
                    pair["src"],
                    pair["dst"],
                    pair["expect"],
                    pair["verdict"],
                    f["ip"],
                    f["proto"],
                    ports,
                    f["state"],
                    f["reason"],
                    "" if f.get("ttl") is None else f["ttl"],
                    f.get("agent", ""),
                    f.get("seen_at", ""),
                )
            )

    return out.getvalue()
