"""One atheris (libFuzzer) harness per wire decoder; run one per process.

    python -m tests.fuzz.harness DECODER RUNS CORPUS_DIR

Each target feeds the fuzzer's bytes to a decoder the way hostile input
reaches it and accepts only the errors that decoder promises (ProtocolError,
SignatureError, the agent's AssignmentError); anything else is a crash.  After
RUNS inputs the harness prints how many it ran and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["protocol", "agent"]):
    from agent.errors import AssignmentError
    from agent.queue import QueueMessage
    from agent.verify import Gate
    from protocol import codec, envelope
    from protocol.envelope import Context
    from protocol.errors import ProtocolError
    from protocol.messages import Assignment, Heartbeat, Refusal, Result, Sighting
    from protocol.signing import SignatureError, key_id

from tests.fuzz.seeds import gate_for_fuzzing, write_seeds

MAX_INPUT_BYTES = 4096
Target = Callable[[bytes], None]


def _decoder(kind: type[codec.M]) -> Target:
    def target(data: bytes) -> None:
        with contextlib.suppress(ProtocolError):
            codec.decode(data, kind)

    return target


def _envelope(data: bytes) -> None:
    keys = {SIGNER_ID: SIGNER_KEY}
    try:
        signed = envelope.open_envelope(data, MAX_INPUT_BYTES)
        envelope.check(signed, Context.RESULT, keys)
    except (ProtocolError, SignatureError):
        pass


def _gate(data: bytes) -> None:
    """The agent's whole intake: a queue body as text, through every check."""
    body = data.decode("utf-8", errors="replace")
    with contextlib.suppress(AssignmentError):
        GATE.admit(QueueMessage("fuzz", body, "receipt", 1))


TARGETS: dict[str, Target] = {
    "assignment": _decoder(Assignment),
    "result": _decoder(Result),
    "heartbeat": _decoder(Heartbeat),
    "refusal": _decoder(Refusal),
    "sighting": _decoder(Sighting),
    "envelope": _envelope,
    "gate": _gate,
}

_workdir = Path(tempfile.mkdtemp(prefix="segscan-fuzz-"))
GATE: Gate = gate_for_fuzzing(_workdir)
SIGNER_KEY = GATE.coordinator_key
SIGNER_ID = key_id(SIGNER_KEY)


def main() -> None:
    name, runs, corpus = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    target = TARGETS[name]
    write_seeds(corpus, name, _workdir)
    count = 0

    def one_input(data: bytes) -> None:
        nonlocal count
        target(data)
        count += 1
        if count >= runs:
            print(f"fuzz {name}: {count} inputs, no crash", flush=True)
            os._exit(0)

    args = [
        sys.argv[0],
        str(corpus),
        f"-runs={runs * 2}",
        f"-max_len={MAX_INPUT_BYTES}",
        "-seed=5",
        f"-artifact_prefix={corpus}/crash-",
        "-print_final_stats=0",
    ]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
