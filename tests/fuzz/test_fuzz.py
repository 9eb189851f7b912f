"""The fuzz run of ``make test``: 100,000 inputs per wire decoder, no crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.run import DECODERS

RUNS = 100_000
ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_every_decoder_takes_100k_fuzzed_inputs_without_a_crash() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--runs", str(RUNS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    lines = done.stdout.splitlines()

    assert done.returncode == 0, done.stdout + done.stderr
    counts = {line.split(":")[0]: int(line.split()[1]) for line in lines[:-1]}
    assert counts == dict.fromkeys(DECODERS, RUNS)
    assert lines[-1] == f"total: {RUNS * len(DECODERS)} inputs, no crash"
