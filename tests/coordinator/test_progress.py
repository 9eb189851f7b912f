"""The --wait progress bar: redrawn on a terminal, one line at the end elsewhere."""

from __future__ import annotations

import io
from typing import Any

from coordinator.progress import ProgressBar, line

FIGURES: dict[str, Any] = {
    "run": "r1",
    "pairs": 54,
    "pairs_done": 27,
    "rate_pps": 1234.4,
    "elapsed_s": 12.0,
    "silent_agents": [],
}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_shows_pairs_rate_and_elapsed_time() -> None:
    assert line(FIGURES, width=10) == (
        "run r1 [#####-----] 27/54 pairs 1234 probes/s 12s"
    )
    assert line(FIGURES | {"silent_agents": ["corp-a"]}).endswith(" silent: corp-a")


def test_not_a_terminal_gets_only_the_final_line() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)

    bar.update(FIGURES)
    bar.update(FIGURES)
    bar.finish(FIGURES | {"pairs_done": 54})

    assert out.getvalue().count("\n") == 1
    assert "54/54 pairs" in out.getvalue()


def test_a_terminal_redraws_one_line_in_place() -> None:
    out = _Tty()
    bar = ProgressBar(out)

    bar.update(FIGURES | {"silent_agents": ["corp-a", "corp-b"]})
    bar.finish(FIGURES | {"pairs_done": 54})

    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 2
    assert len(frames[1].rstrip("\n")) == len(frames[0])  # padded over the longer one
    assert out.getvalue().endswith("\n")
