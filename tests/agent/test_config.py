"""The agent's settings from its environment."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.errors import ConfigError
from protocol.messages import ScanKind

MINIMAL = {
    "SEGSCAN_SUBNET": "cde-a",
    "SEGSCAN_COORDINATOR_URL": "http://10.0.0.9:8470/",
}


def test_minimal_environment_gets_the_documented_defaults() -> None:
    config = AgentConfig.from_env(MINIMAL)

    assert config == AgentConfig(
        subnet="cde-a",
        agent_id=f"cde-a@{socket.gethostname()}",
        queue_name="segscan-cde-a",
        sqs_endpoint=None,
        region="us-east-1",
        coordinator_url="http://10.0.0.9:8470",
        engine=ScanKind.AUTO,
        state_dir=Path("/var/lib/segscan-agent"),
        agent_key="/var/lib/segscan-agent/agent-key.pem",
    )


def test_every_setting_can_be_given() -> None:
    env = {
        **MINIMAL,
        "SEGSCAN_AGENT_ID": "agent-7",
        "SEGSCAN_QUEUE_PREFIX": "lab_",
        "SEGSCAN_SQS_ENDPOINT": "http://127.0.0.1:5000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "SEGSCAN_ENGINE": "connect",
        "SEGSCAN_STATE_DIR": "/srv/agent",
    }

    config = AgentConfig.from_env(env)

    assert (config.agent_id, config.queue_name, config.sqs_endpoint) == (
        "agent-7",
        "lab_cde-a",
        "http://127.0.0.1:5000",
    )
    assert (config.region, config.engine, config.state_dir) == (
        "eu-west-1",
        ScanKind.CONNECT,
        Path("/srv/agent"),
    )


@pytest.mark.parametrize("missing", ["SEGSCAN_SUBNET", "SEGSCAN_COORDINATOR_URL"])
def test_a_missing_variable_is_named(missing: str) -> None:
    env = {name: value for name, value in MINIMAL.items() if name != missing}

    with pytest.raises(ConfigError) as caught:
        AgentConfig.from_env(env)

    assert caught.value.subject == missing
    assert str(caught.value) == f"{missing}: not set; the agent needs it"


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("SEGSCAN_ENGINE", "raw", "is not auto|syn|connect"),
        ("SEGSCAN_COORDINATOR_URL", "10.0.0.9:8470", "is not an http:// or https://"),
        ("SEGSCAN_SQS_ENDPOINT", "ftp://x", "is not an http:// or https://"),
        ("SEGSCAN_SUBNET", "cde a", "is not a valid SQS name"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint) as caught:
        AgentConfig.from_env({**MINIMAL, name: value})

    assert caught.value.subject == name


def test_lease_and_refusal_hiding_default_to_minutes_and_can_be_set() -> None:
    """The lab shortens them to its clock; AWS keeps the defaults."""
    default = AgentConfig.from_env(MINIMAL)
    lab = AgentConfig.from_env(
        {**MINIMAL, "SEGSCAN_LEASE_S": "60", "SEGSCAN_REJECTED_HIDE_S": "2"}
    )

    assert (default.lease_s, default.rejected_hide_s) == (120, 300)
    assert (lab.lease_s, lab.rejected_hide_s) == (60, 2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEGSCAN_LEASE_S", "10"),  # under 30 s a renewal every third is too tight
        ("SEGSCAN_LEASE_S", "a minute"),
        ("SEGSCAN_REJECTED_HIDE_S", "43201"),  # over SQS's 12 hours
    ],
)
def test_a_lease_setting_out_of_range_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AgentConfig.from_env({**MINIMAL, name: value})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("alias/segscan-agent-{subnet}", "alias/segscan-agent-cde-a"),
        (
            "arn:aws:kms:us-east-1:111111111111:alias/segscan-agent-{subnet}",
            "arn:aws:kms:us-east-1:111111111111:alias/segscan-agent-cde-a",
        ),
        ("/srv/keys/{subnet}.pem", "/srv/keys/cde-a.pem"),
        ("/srv/keys/agent.pem", "/srv/keys/agent.pem"),
    ],
)
def test_the_agent_key_names_its_own_subnets_key(given: str, expected: str) -> None:
    """One image, one environment file: the subnet found at start picks the key."""
    config = AgentConfig.from_env({**MINIMAL, "SEGSCAN_AGENT_KEY": given})

    assert config.agent_key == expected
