"""The HTML report: self-contained, and carrying everything an assessor asks for."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from coordinator import html


class _Links(HTMLParser):
    """Collects every URL the page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]


def test_the_page_loads_nothing_from_elsewhere(founding: dict[str, Any]) -> None:
    """Only in-page anchors: no CDN, no script, no stylesheet link (works offline)."""
    page = html.render(founding)
    links = _Links()
    links.feed(page)

    assert links.urls
    assert all(url.startswith("#") for url in links.urls)
    assert "<script" not in page


def test_the_hole_is_a_fail_cell_in_the_matrix(founding: dict[str, Any]) -> None:
    page = html.render(founding)
    cells = re.findall(
        r'<td class="v-(\w+)" data-src="([\w-]+)" data-dst="([\w-]+)"', page
    )

    assert ("fail", "corp-b", "cde-c") in cells
    assert [c for c in cells if c[0] == "fail"] == [("fail", "corp-b", "cde-c")]
    assert len(cells) == 54


def test_the_hole_is_a_violation_edge_in_the_graph(founding: dict[str, Any]) -> None:
    page = html.render(founding)
    edges = re.findall(
        r'<g class="edge( violation)?[^"]*" data-src="([\w-]+)" '
        r'data-dst="([\w-]+)"',
        page,
    )

    assert [(s, d) for v, s, d in edges if v] == [("corp-b", "cde-c")]
    assert "tcp/5432" in page


def test_every_item_an_assessor_needs_is_on_the_page(founding: dict[str, Any]) -> None:
    """Tester, dates, method, tool version, policy hash, scope, pairs, findings
    with evidence, coverage, limitations, transitive paths."""
    founding["assessment"] = {"tester": "Ada <QSA>", "organisation": "Example Pay"}
    page = html.render(founding)

    for needed in (
        "Ada &lt;QSA&gt;",
        "Example Pay",
        founding["started_at"],
        founding["finished_at"],
        founding["method"]["summary"],
        founding["tool"]["version"],
        founding["policy"]["sha256"],
        "Controls tested",
        "10.0.3.0/28",
        'id="pair-corp-b--cde-c" open',
        "10.0.3.5",
        "syn-ack",
        "corp-b@test",
        "Coverage: ",
        "IPv6 was not tested",
        'id="transitive"',
        "PCI DSS v4.0 11.4.5",
    ):
        assert needed in page, needed
