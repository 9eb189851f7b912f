"""Starting points for the fuzzers: valid messages of each kind, and a gate.

The fuzzer mutates these, so it spends its inputs near the shapes decoders
accept instead of on random bytes every decoder refuses at the first byte.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig
from agent.verify import Gate
from protocol import codec, envelope
from protocol.envelope import Context, Signed
from protocol.messages import (
    Assignment,
    Coverage,
    Finding,
    Heartbeat,
    PortState,
    Proto,
    Reason,
    Refusal,
    Refused,
    Result,
    ScanKind,
    Seen,
    Sighting,
)
from protocol.scope import signature_line, signature_path
from protocol.signing import generate_key, key_id, load_private_key, public_path

SUBNET = "corp-a"
NOW = time.time()
ASSIGNMENT = Assignment(
    id="a1",
    run_id="run-1",
    src=SUBNET,
    dst="cde-a",
    targets=("10.0.1.0/28",),
    tcp=((1, 1024),),
    udp=((53, 53),),
    rate_pps=1000,
    passes=2,
    issued_at=NOW,
    expires_at=NOW + 3600,
)
RESULT = Result(
    assignment_id="a1",
    run_id="run-1",
    src=SUBNET,
    dst="cde-a",
    agent="corp-a@host",
    engine="syn",
    started_at=NOW,
    finished_at=NOW + 1,
    coverage=Coverage(planned=14336, sent=14336, answered=1, passes=2),
    findings=(
        Finding("10.0.1.5", Proto.TCP, ((443, 443),), PortState.OPEN, Reason.SYN_ACK),
    ),
    error=None,
)
HEARTBEAT = Heartbeat(
    agent="corp-a@host", subnet=SUBNET, sent_at=NOW, assignment_id="a1"
)
REFUSAL = Refusal(
    agent="corp-a@host",
    subnet=SUBNET,
    message_id="m-1",
    body_sha256="0" * 64,
    reason=Refused.PORT,
    detail="udp/161 to 10.0.1.0/28 outside approved scope",
    received_at=NOW,
    assignment_id="a1",
    run_id="run-1",
)
SIGHTING = Sighting(
    agent="corp-a@host",
    subnet=SUBNET,
    ip="172.16.1.4",
    started_at=NOW,
    finished_at=NOW + 5,
    seen=(Seen("10.0.1.4", Proto.TCP, ((1, 1024), (8443, 8443))),),
    dropped=0,
)


def gate_for_fuzzing(workdir: Path) -> Gate:
    """A gate for ``corp-a`` with keys and a signed scope made in ``workdir``."""
    generate_key(workdir / "coordinator.pem")
    owner = generate_key(workdir / "owner.pem")
    scope = workdir / "scope.yaml"
    scope.write_text(
        f"version: 1\nsubnets: [{SUBNET}]\nmax_rate_pps: 5000\ndestinations:\n"
        "  - {cidr: 10.0.0.0/16, tcp: 1-65535, udp: [53]}\n"
    )
    signature = owner.sign(envelope.signing_input(Context.SCOPE, scope.read_bytes()))
    signature_path(scope).write_text(
        signature_line(key_id(owner.public_key()), signature)
    )
    config = AgentConfig(
        subnet=SUBNET,
        agent_id=f"{SUBNET}@fuzz",
        queue_name=f"segscan-{SUBNET}",
        sqs_endpoint=None,
        region="us-east-1",
        coordinator_url="http://127.0.0.1:9",
        engine=ScanKind.AUTO,
        state_dir=workdir / "state",
        coordinator_key=public_path(workdir / "coordinator.pem"),
        scope=scope,
        scope_key=public_path(workdir / "owner.pem"),
    )

    return Gate.from_config(config)


def _signed(payload: bytes, context: Context, key: Ed25519PrivateKey) -> bytes:
    signature = key.sign(envelope.signing_input(context, payload))

    return msgspec.msgpack.encode(Signed(payload, key_id(key.public_key()), signature))


def write_seeds(corpus: Path, name: str, workdir: Path) -> None:
    """Put the seeds of decoder ``name`` into ``corpus``."""
    coordinator = load_private_key(workdir / "coordinator.pem")
    seeds = {
        "assignment": [codec.encode(ASSIGNMENT)],
        "result": [codec.encode(RESULT)],
        "heartbeat": [codec.encode(HEARTBEAT)],
        "refusal": [codec.encode(REFUSAL)],
        "sighting": [codec.encode(SIGHTING)],
        "envelope": [_signed(codec.encode(RESULT), Context.RESULT, coordinator)],
        "gate": [
            codec.to_text(
                _signed(codec.encode(ASSIGNMENT), Context.ASSIGNMENT, coordinator)
            ).encode()
        ],
    }[name]
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)
