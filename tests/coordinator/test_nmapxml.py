"""nmap XML export: python-libnmap parses every file; nmap's ndiff compares two."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from libnmap.parser import NmapParser

from coordinator import nmapxml


@pytest.fixture
def exported(founding: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    files = {}
    for src, text in nmapxml.render_all(founding).items():
        files[src] = tmp_path / f"{src}.xml"
        files[src].write_text(text, encoding="utf-8")

    return files


def test_one_nmaprun_per_source_subnet_that_libnmap_parses(
    exported: dict[str, Path],
) -> None:
    parsed = {
        src: NmapParser.parse_fromfile(str(path)) for src, path in exported.items()
    }

    assert len(parsed) == 12
    assert all(r.commandline.startswith("segscan run ") for r in parsed.values())
    assert parsed["corp-b"].hosts_total == 9  # the .5 host of every cde subnet
    hole = parsed["corp-b"].get_host_byid("10.0.3.5")
    assert [(s.port, s.protocol, s.state) for s in hole.services if s.open()] == [
        (5432, "tcp", "open")
    ]
    assert hole.status == "up"
    assert parsed["corp-a"].get_host_byid("10.0.3.5").status == "down"


def test_filtered_ports_are_summarised_as_extraports(
    exported: dict[str, Path],
) -> None:
    """65,535 filtered TCP ports become one extraports line; 4 UDP ports are
    listed."""
    report = NmapParser.parse_fromfile(str(exported["corp-a"]))
    host = report.get_host_byid("10.0.1.5")

    assert host.extraports_state["state"] == {"state": "filtered", "count": "65535"}
    assert [(s.port, s.state) for s in host.services] == [
        (53, "open|filtered"),
        (123, "open|filtered"),
        (161, "open|filtered"),
        (500, "open|filtered"),
    ]
    assert "nmaprun" in exported["corp-a"].read_text()


def _ndiff(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    ndiff = shutil.which("ndiff")
    assert ndiff, "ndiff (Debian package ndiff) is not installed"

    return subprocess.run(
        [ndiff, str(a), str(b)], capture_output=True, text=True, timeout=30, check=False
    )


def test_ndiff_reads_the_files_and_sees_the_hole(exported: dict[str, Path]) -> None:
    """corp-a sees nothing open in cde; corp-b sees 10.0.3.5:5432: ndiff says so."""
    same = _ndiff(exported["corp-a"], exported["corp-a"])
    drift = _ndiff(exported["corp-a"], exported["corp-b"])

    assert same.returncode == 0, same.stderr
    assert drift.returncode == 1, drift.stderr
    assert "10.0.3.5" in drift.stdout
    assert "5432/tcp" in drift.stdout
    assert "open" in drift.stdout


def test_states_map_onto_nmaps_vocabulary() -> None:
    assert nmapxml.STATES["arrived"] == "unfiltered"
    assert nmapxml.STATES["rejected"] == "filtered"
    assert set(nmapxml.STATES.values()) <= {
        "open",
        "closed",
        "filtered",
        "unfiltered",
        "open|filtered",
    }
