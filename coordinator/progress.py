"""The progress bar of ``coordinator run --wait``: one line per run, redrawn in a
terminal; elsewhere (logs, CI) nothing until the run ends, then one line."""

from __future__ import annotations

from typing import Any, TextIO

BAR_WIDTH = 24


def line(figures: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """``run ID [#####-----] 30/54 pairs 1200 probes/s 12s``, plus silent agents."""
    total = max(1, figures["pairs"])
    filled = round(width * figures["pairs_done"] / total)
    text = (
        f"run {figures['run']} [{'#' * filled}{'-' * (width - filled)}] "
        f"{figures['pairs_done']}/{figures['pairs']} pairs "
        f"{figures['rate_pps']:.0f} probes/s {figures['elapsed_s']:.0f}s"
    )
    if figures.get("silent_agents"):
        text += " silent: " + ",".join(figures["silent_agents"])

    return text


class ProgressBar:
    """Draws ``line`` over itself on a terminal; quiet when not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._drawn = 0

    def update(self, figures: dict[str, Any]) -> None:
        if not self.tty:
            return
        text = line(figures)
        # Pad over a longer previous line instead of relying on terminal escapes.
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def finish(self, figures: dict[str, Any]) -> None:
        if self.tty:
            self.update(figures)
            self.stream.write("\n")
        else:
            self.stream.write(line(figures) + "\n")
        self.stream.flush()
