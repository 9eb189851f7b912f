"""The gate: what an agent refuses, and that it refuses before decoding or scanning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig
from agent.errors import AssignmentError, ConfigError
from agent.queue import QueueMessage
from agent.verify import CLOCK_SKEW_S, MAX_BODY_CHARS, MAX_LIFETIME_S, Gate
from coordinator.planner import ASSIGNMENT_TTL_S
from protocol import codec
from protocol.envelope import Signed
from protocol.messages import Assignment, Refused, ScanKind

if TYPE_CHECKING:
    from conftest import TrustKit

SUBNET = "corp-a"
NOW = 1_800_000_000.0
SCOPE = """\
  - {cidr: 10.0.0.0/16, tcp: 1-65535, udp: [53, 123]}
  - {cidr: 10.1.0.0/24, tcp: [443]}
"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(trust_kit: TrustKit) -> AgentConfig:
    trust_kit.approve(SUBNET, SCOPE, max_rate_pps=5000)
    return trust_kit.config(
        subnet=SUBNET,
        agent_id=f"{SUBNET}@test",
        queue_name=f"segscan-{SUBNET}",
        sqs_endpoint=None,
        region="us-east-1",
        coordinator_url="http://127.0.0.1:9",
        engine=ScanKind.AUTO,
    )


@pytest.fixture
def gate(config: AgentConfig, clock: Clock) -> Gate:
    return Gate.from_config(config, clock)


def assignment(**fields: Any) -> Assignment:
    values: dict[str, Any] = {
        "id": "a-1",
        "run_id": "run-1",
        "src": SUBNET,
        "dst": "cde-a",
        "targets": ("10.0.1.0/28",),
        "tcp": ((1, 1024),),
        "udp": ((53, 53),),
        "rate_pps": 1000,
        "passes": 2,
        "issued_at": NOW,
        "expires_at": NOW + ASSIGNMENT_TTL_S,
    }
    return Assignment(**(values | fields))


def message(body: str, message_id: str = "m-1") -> QueueMessage:
    return QueueMessage(message_id, body, "receipt", 1)


Refuse = Callable[[str], AssignmentError]


@pytest.fixture
def refuse(gate: Gate) -> Refuse:
    def refused(body: str) -> AssignmentError:
        with pytest.raises(AssignmentError) as caught:
            gate.admit(message(body))
        return caught.value

    return refused


def test_a_signed_assignment_inside_the_scope_is_admitted_and_remembered(
    gate: Gate, trust_kit: TrustKit, config: AgentConfig
) -> None:
    admitted = gate.admit(message(trust_kit.sign(assignment())))

    assert admitted == assignment()
    assert (config.state_dir / "replay.json").exists()


def test_a_bad_signature_is_refused_and_nothing_is_trusted(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    body = trust_kit.sign(assignment())
    signed = msgspec.msgpack.decode(codec.from_text(body), type=Signed)
    tampered = msgspec.structs.replace(
        signed, payload=codec.encode(assignment(targets=("10.9.9.0/24",)))
    )

    error = refuse(codec.to_text(msgspec.msgpack.encode(tampered)))

    assert error.reason == Refused.BAD_SIGNATURE
    assert error.assignment is None


def test_a_valid_signature_from_an_unknown_key_is_refused(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    stranger = Ed25519PrivateKey.generate()

    error = refuse(trust_kit.sign(assignment(), key=stranger))

    assert error.reason == Refused.UNKNOWN_KEY
    assert error.assignment is None


def test_the_payload_is_not_decoded_before_the_signature_holds(
    refuse: Refuse, trust_kit: TrustKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder bug cannot be reached by someone without the coordinator's key."""
    decoded: list[bytes] = []
    monkeypatch.setattr(codec, "decode", lambda data, kind: decoded.append(data))
    stranger = Ed25519PrivateKey.generate()

    refuse(trust_kit.sign(assignment(), key=stranger))

    assert decoded == []


def test_an_expired_assignment_is_refused(refuse: Refuse, trust_kit: TrustKit) -> None:
    old = assignment(issued_at=NOW - 4000, expires_at=NOW - CLOCK_SKEW_S - 1)

    error = refuse(trust_kit.sign(old))

    assert error.reason == Refused.EXPIRED
    assert error.assignment == old


def test_a_replayed_assignment_is_refused_but_a_redelivery_is_not(
    gate: Gate, trust_kit: TrustKit
) -> None:
    body = trust_kit.sign(assignment())
    gate.admit(message(body, "m-1"))
    gate.admit(message(body, "m-1"))  # SQS handed the same message out again

    with pytest.raises(AssignmentError) as caught:
        gate.admit(message(body, "m-2"))

    assert caught.value.reason == Refused.REPLAYED


def test_the_replay_cache_survives_a_restart(
    config: AgentConfig, clock: Clock, trust_kit: TrustKit
) -> None:
    body = trust_kit.sign(assignment())
    Gate.from_config(config, clock).admit(message(body, "m-1"))
    restarted = Gate.from_config(config, clock)

    with pytest.raises(AssignmentError) as caught:
        restarted.admit(message(body, "m-2"))

    assert caught.value.reason == Refused.REPLAYED


def test_a_destination_outside_the_scope_is_refused(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    error = refuse(trust_kit.sign(assignment(targets=("10.9.9.0/24",))))

    assert error.reason == Refused.DESTINATION
    assert error.message == "destination 10.9.9.0/24 outside approved scope"


def test_a_port_outside_the_scope_is_refused(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    error = refuse(trust_kit.sign(assignment(udp=((53, 53), (161, 161)))))

    assert error.reason == Refused.PORT
    assert error.message == "udp/161 to 10.0.1.0/28 outside approved scope"


def test_a_rate_above_the_scope_is_refused(refuse: Refuse, trust_kit: TrustKit) -> None:
    error = refuse(trust_kit.sign(assignment(rate_pps=5001)))

    assert error.reason == Refused.RATE
    assert error.message == "rate 5001 pps above the approved 5000 pps"


@pytest.mark.parametrize(
    ("issued", "expires", "admitted"),
    [
        (NOW + CLOCK_SKEW_S - 1, NOW + 3600, True),  # agent's clock a bit behind
        (NOW + CLOCK_SKEW_S + 1, NOW + 3600, False),
        (NOW - 3600, NOW - CLOCK_SKEW_S + 1, True),  # agent's clock a bit ahead
        (NOW - 3600, NOW - CLOCK_SKEW_S - 1, False),
    ],
)
def test_clock_skew_is_tolerated_up_to_the_stated_limit(
    gate: Gate, trust_kit: TrustKit, issued: float, expires: float, admitted: bool
) -> None:
    body = trust_kit.sign(assignment(issued_at=issued, expires_at=expires))

    if admitted:
        gate.admit(message(body))
    else:
        with pytest.raises(AssignmentError):
            gate.admit(message(body))


def test_agents_accept_the_lifetime_the_planner_gives() -> None:
    assert ASSIGNMENT_TTL_S <= MAX_LIFETIME_S


def test_an_assignment_valid_for_too_long_is_refused(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    error = refuse(trust_kit.sign(assignment(expires_at=NOW + MAX_LIFETIME_S + 1)))

    assert error.reason == Refused.LIFETIME


def test_an_assignment_for_another_subnet_is_refused(
    refuse: Refuse, trust_kit: TrustKit
) -> None:
    error = refuse(trust_kit.sign(assignment(src="corp-b")))

    assert error.reason == Refused.WRONG_SUBNET


@pytest.mark.parametrize(
    "body", ["", "not base64!", codec.to_text(b"\x93\x01"), "A" * (MAX_BODY_CHARS + 4)]
)
def test_garbage_is_refused_without_a_crash(refuse: Refuse, body: str) -> None:
    error = refuse(body)

    assert error.reason in (Refused.UNDECODABLE, Refused.OVERSIZED)
    assert error.assignment is None


def test_a_scope_with_a_bad_signature_stops_the_agent(
    config: AgentConfig, trust_kit: TrustKit
) -> None:
    scope = trust_kit.scope_dir / f"{SUBNET}.yaml"
    scope.write_text(scope.read_text().replace("10.1.0.0/24", "0.0.0.0/0"))

    with pytest.raises(ConfigError, match="bad signature") as caught:
        Gate.from_config(config)

    assert caught.value.subject == "SEGSCAN_SCOPE"


def test_a_scope_for_other_subnets_only_stops_the_agent(
    config: AgentConfig, trust_kit: TrustKit
) -> None:
    (trust_kit.scope_dir / f"{SUBNET}.yaml").unlink()
    trust_kit.approve("corp-b", SCOPE)

    with pytest.raises(ConfigError, match="must name subnet 'corp-a'"):
        Gate.from_config(config)


def test_a_damaged_replay_file_stops_the_agent(config: AgentConfig) -> None:
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / "replay.json").write_text("{not json")

    with pytest.raises(ConfigError, match="damaged"):
        Gate.from_config(config)


def test_a_missing_coordinator_key_is_named(
    config: AgentConfig, tmp_path: Path
) -> None:
    broken = AgentConfig(**{**config.__dict__, "coordinator_key": tmp_path / "none"})

    with pytest.raises(ConfigError) as caught:
        Gate.from_config(broken)

    assert caught.value.subject == "SEGSCAN_COORDINATOR_KEY"


def test_ids_are_forgotten_once_their_assignment_expired(
    gate: Gate, trust_kit: TrustKit, clock: Clock
) -> None:
    gate.admit(message(trust_kit.sign(assignment(id="old", expires_at=NOW + 100))))
    clock.now = NOW + 100 + CLOCK_SKEW_S + 1

    gate.admit(
        message(
            trust_kit.sign(
                assignment(id="new", issued_at=clock.now, expires_at=clock.now + 100)
            ),
            "m-2",
        )
    )

    assert len(gate.replay) == 1  # "old" would be refused as expired anyway
