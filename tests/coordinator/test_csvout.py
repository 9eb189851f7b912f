"""The findings CSV: one row per finding, its pair and verdict beside it."""

from __future__ import annotations

import csv
import io
from typing import Any

from coordinator import csvout


def test_every_finding_is_a_row_and_the_hole_reads_plainly(
    founding: dict[str, Any],
) -> None:
    rows = list(csv.DictReader(io.StringIO(csvout.render(founding))))
    hole = [r for r in rows if r["state"] == "open" and r["dst"] == "cde-c"]

    assert len(rows) == sum(len(p["findings"]) for p in founding["pairs"])
    assert tuple(rows[0]) == csvout.COLUMNS
    assert [(h["src"], h["ip"], h["ports"], h["verdict"], h["ttl"]) for h in hole] == [
        ("corp-b", "10.0.3.5", "5432", "fail", "63")
    ]
    assert hole[0]["agent"] == "corp-b@test"
