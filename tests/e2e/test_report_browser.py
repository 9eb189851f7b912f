"""The founding case's report and dashboard in a real browser, its exports read by
nmap's own tools, and its evidence bundle checked; screenshots are kept in
out/test-artifacts/ for a person to look at."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from libnmap.parser import NmapParser

from tests.e2e.conftest import cli

pytestmark = [pytest.mark.root, pytest.mark.slow]

ARTIFACTS = Path(__file__).parents[2] / "out" / "test-artifacts"
LAB_STATE = Path("/run/segscan-lab/state.json")
HOLE_CELL = re.compile(r'<td class="v-fail" data-src="corp-b" data-dst="cde-c"')
HOLE_EDGE = re.compile(
    r'<g class="edge violation[^"]*" data-src="corp-b" data-dst="cde-c"'
)
BROWSER_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Debian's chromium, headless, with a throwaway profile and no network
    beyond what it is pointed at."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (deploy/debian-packages.txt)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


def _dom(browser: list[str], url: str) -> str:
    done = subprocess.run(
        [*browser, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    return done.stdout


def _screenshot(browser: list[str], url: str, name: str, height: int = 1800) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    subprocess.run(
        [*browser, f"--window-size=1400,{height}", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )

    return shot


def _run_id(founding_run: tuple[int, dict[str, Any]]) -> str:
    return str(founding_run[1]["run"])


def test_the_html_report_shows_the_hole_in_matrix_and_graph(
    founding_run: tuple[int, dict[str, Any]], browser: list[str]
) -> None:
    """Rendered by chromium from file://: the hole is the only fail cell and the
    only violation edge; a screenshot is saved."""
    page = ARTIFACTS / "founding-report.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    made = cli(
        "coordinator",
        "report",
        _run_id(founding_run),
        "--format",
        "html",
        "-o",
        str(page),
    )

    dom = _dom(browser, page.as_uri())
    # Tall enough for summary, scope, matrix and graph in one picture.
    shot = _screenshot(browser, page.as_uri(), "founding-report.png", height=3000)

    assert made.returncode == 1, made.stderr
    assert HOLE_CELL.search(dom)
    assert dom.count('class="v-fail" data-src=') == 1
    assert HOLE_EDGE.search(dom)
    assert dom.count('class="edge violation') == 1
    assert shot.stat().st_size > 10_000


def test_the_dashboard_shows_the_run_with_the_hole(
    founding_run: tuple[int, dict[str, Any]], browser: list[str]
) -> None:
    """Served by the lab's coordinator: runs list, then the run's page."""
    base = json.loads(LAB_STATE.read_text())["coordinator_url"].rstrip("/")
    run_url = f"{base}/runs/{_run_id(founding_run)}"

    runs = _dom(browser, base + "/")
    dom = _dom(browser, run_url)
    shot = _screenshot(browser, run_url, "founding-dashboard.png")

    assert _run_id(founding_run) in runs
    assert HOLE_CELL.search(dom)
    assert HOLE_EDGE.search(dom)
    assert 'id="live-pairs_done">54<' in dom
    assert shot.stat().st_size > 10_000


def test_nmap_xml_exports_parse_and_ndiff_compares_two(
    founding_run: tuple[int, dict[str, Any]], tmp_path: Path
) -> None:
    """One file per source subnet from the real run; libnmap reads them all and
    ndiff sees corp-b's open 5432 that corp-a does not have."""
    out = tmp_path / "nmap"
    made = cli(
        "coordinator",
        "report",
        _run_id(founding_run),
        "--format",
        "xml",
        "-o",
        str(out),
    )
    files = sorted(out.glob("*.xml"))
    parsed = {f.stem: NmapParser.parse_fromfile(str(f)) for f in files}
    drift = subprocess.run(
        ["ndiff", str(out / "corp-a.xml"), str(out / "corp-b.xml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert made.returncode == 1, made.stderr
    assert len(files) == 12
    hole = parsed["corp-b"].get_host_byid("10.0.3.5")
    assert [s.port for s in hole.services if s.open()] == [5432]
    assert drift.returncode == 1, drift.stderr
    assert "5432/tcp" in drift.stdout


def test_the_evidence_bundle_verifies_and_names_an_altered_file(
    founding_run: tuple[int, dict[str, Any]], tmp_path: Path
) -> None:
    bundle = tmp_path / "evidence"
    fetched = cli(
        "coordinator", "evidence", "fetch", _run_id(founding_run), "-o", str(bundle)
    )
    good = cli("coordinator", "evidence", "verify", str(bundle))
    report = bundle / "report" / "report.json"
    report.write_bytes(report.read_bytes().replace(b'"fail"', b'"pass"', 1))
    bad = cli("coordinator", "evidence", "verify", str(bundle))

    assert fetched.returncode == 0, fetched.stderr
    assert good.returncode == 0, good.stdout + good.stderr
    assert "integrity, not origin" in good.stderr
    assert bad.returncode == 1
    assert "altered: report/report.json" in bad.stdout


def test_diff_of_a_run_with_itself_is_no_drift(
    founding_run: tuple[int, dict[str, Any]],
) -> None:
    run = _run_id(founding_run)

    done = cli("coordinator", "diff", run, run)

    assert done.returncode == 0, done.stderr
    assert "no change in reachability or verdicts" in done.stdout
