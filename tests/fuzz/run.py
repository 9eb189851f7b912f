"""Run the fuzz harnesses: RUNS inputs per decoder, one process each, in turn.

    python -m tests.fuzz.run [--runs N] [DECODER ...]

Prints one line per decoder with the number of inputs it ran, then a total;
exits 1 if a harness crashed or ran fewer inputs than asked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DECODERS = (
    "assignment",
    "result",
    "heartbeat",
    "refusal",
    "sighting",
    "envelope",
    "gate",
)
DEFAULT_RUNS = 100_000
TIMEOUT_S = 600


def fuzz(decoder: str, runs: int, workdir: Path) -> tuple[int, str]:
    """Run one harness; the inputs it reports, and its output when it failed."""
    corpus = workdir / decoder
    argv = [sys.executable, "-m", "tests.fuzz.harness", decoder, str(runs), str(corpus)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    prefix = f"fuzz {decoder}: "
    for line in done.stdout.splitlines():
        if line.startswith(prefix) and done.returncode == 0:
            return int(line.removeprefix(prefix).split()[0]), ""

    return 0, done.stdout + done.stderr[-4000:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("decoders", nargs="*", choices=[*DECODERS, []], default=[])
    args = parser.parse_args(argv)
    failed = False
    total = 0
    with tempfile.TemporaryDirectory(prefix="segscan-fuzz-") as work:
        for decoder in args.decoders or DECODERS:
            started = time.monotonic()
            count, output = fuzz(decoder, args.runs, Path(work))
            elapsed = time.monotonic() - started
            print(f"{decoder}: {count} inputs, {elapsed:.1f} s", flush=True)
            if count < args.runs:
                failed = True
                print(output, file=sys.stderr)
            total += count
    print(f"total: {total} inputs, {'FAILED' if failed else 'no crash'}")

    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
